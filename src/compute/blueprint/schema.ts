import { z } from 'zod';

// The blueprint: what an IMVU runs. One zod schema for the signed `compute.deploy` body and for
// the YAML file a creator writes, so what is checked at the CLI is what the chokepoint decides.
// Like every command schema it validates and never transforms: the ledger holds what was signed.

/** A path inside the container: absolute, no `.`/`..` segments, no empty segments, no NUL. */
export const containerPath = z
  .string()
  .min(2)
  .max(1024)
  .regex(/^(\/[^/\0]+)+$/, 'must be an absolute path such as /app/run.sh')
  .refine((p) => !p.split('/').some((s) => s === '.' || s === '..'), 'must not contain . or .. segments');

// An image reference: `busybox` (the platform's base image built from the host's busybox-static,
// nothing downloaded) or an OCI image layout on this host, `oci:/abs/dir:tag`, unpacked by umoci.
export const imageRef = z
  .string()
  .max(1100)
  .regex(/^(busybox|oci:(\/[A-Za-z0-9._/-]+):([A-Za-z0-9._-]{1,128}))$/, 'must be busybox or oci:/path/to/layout:tag');

const envName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,127}$/, 'must be an environment variable name such as PORT');

/** A file placed in the rootfs before it is made read-only (text, at most 256 KiB each). */
export const blueprintFile = z
  .object({
    path: containerPath,
    content: z.string().max(256 * 1024),
    /** Octal permission bits as a number, e.g. 0o755 = 493; no setuid/setgid/sticky. */
    mode: z.number().int().min(0).max(0o777).optional(),
  })
  .strict();

export const healthCheck = z
  .object({
    /** HTTP GET of this path on `port` must answer 2xx; without it a TCP connect must succeed. */
    http_path: z.string().min(1).max(512).regex(/^\/[\x21-\x7e]*$/, 'must be a path such as /healthz').optional(),
    interval_ms: z.number().int().min(100).max(600_000).optional(),
    timeout_ms: z.number().int().min(50).max(60_000).optional(),
    retries: z.number().int().min(1).max(1000).optional(),
  })
  .strict();

export const blueprintSchema = z
  .object({
    image: imageRef.optional(),
    files: z.array(blueprintFile).max(256).optional(),
    command: z.array(z.string().min(1).max(4096)).min(1).max(256),
    env: z.record(envName, z.string().max(32 * 1024)).optional(),
    /** The TCP port the workload listens on, at its workload address. */
    port: z.number().int().min(1).max(65535).optional(),
    health: healthCheck.optional(),
    /** On daemon restart or workload exit: restart it (`always`), or leave it stopped (`never`). */
    restart: z.enum(['always', 'never']).optional(),
  })
  .strict()
  .refine((b) => b.image !== undefined || (b.files !== undefined && b.files.length > 0), 'needs an image or files')
  .refine((b) => !b.files || new Set(b.files.map((f) => f.path)).size === b.files.length, 'files: each path at most once')
  .refine((b) => !b.files || b.files.reduce((n, f) => n + f.content.length, 0) <= 1024 * 1024, 'files: 1 MiB of content in all at most')
  .refine((b) => b.health === undefined || b.port !== undefined, 'health needs a port')
  .refine((b) => !b.env || Object.keys(b.env).length <= 256, 'env: 256 variables at most');

export type Blueprint = z.infer<typeof blueprintSchema>;
export type BlueprintFile = z.infer<typeof blueprintFile>;
export type HealthCheck = z.infer<typeof healthCheck>;

/** The signed `compute.deploy` body. */
export const computeDeployBody = z
  .object({
    imvu: z.string().regex(/^IMVU-\d{3,9}$/, 'must be an IMVU id such as IMVU-001'),
    blueprint: blueprintSchema,
  })
  .strict();
