import { notYetEnforced } from '../gate.ts';

export const gate = notYetEnforced(
  7,
  'Resource Quota Enforcement',
  ['imvu.create', 'imvu.scale'],
  'src/compute (cgroup v1/v2 cpu, memory, pids, io limits)',
  'kernel quotas (cgroups) are not applied yet: the envelope is recorded but not enforced by the kernel',
);
