// Domain names as the resolver keeps them: lower case (ASCII only, RFC 4343), no trailing dot,
// the root as ''. dns-packet decodes the root as '.' and keeps the case it received.

export function norm(name: string): string {
  if (name === '.' || name === '') return '';
  const n = name.endsWith('.') ? name.slice(0, -1) : name;
  return n.replace(/[A-Z]/g, (c) => c.toLowerCase());
}

export function labelCount(name: string): number {
  return name === '' ? 0 : name.split('.').length;
}

/** `name` is `zone` or below it. */
export function isAtOrBelow(name: string, zone: string): boolean {
  return zone === '' || name === zone || name.endsWith('.' + zone);
}

/** The ancestor of `name` (or itself) with `labels` labels. */
export function ancestor(name: string, labels: number): string {
  if (labels <= 0) return '';
  const parts = name.split('.');
  return parts.slice(parts.length - labels).join('.');
}

/** `name`, its parent, ..., '' (the root). */
export function* selfAndAncestors(name: string): Generator<string> {
  let n = name;
  for (;;) {
    yield n;
    if (n === '') return;
    const dot = n.indexOf('.');
    n = dot < 0 ? '' : n.slice(dot + 1);
  }
}

/** For messages and logs: 'www.example.' and '.' for the root. */
export function display(name: string): string {
  return name === '' ? '.' : `${name}.`;
}
