// The OpenAPI 3.1 document, generated from the route table and the same zod schemas that validate
// requests (path and query here; command bodies in the chokepoint).
import { z } from 'zod';
import type { CommandType } from '../core/types.ts';
import type { RouteDef } from './routes.ts';
import { ErrorBody, MAX_BODY_BYTES, ReceiptBody, SUBMITTABLE_TYPES, signedCommandSchema } from './schemas.ts';

type JsonSchema = Record<string, unknown>;

function jsonSchema(schema: z.ZodType): JsonSchema {
  const { $schema: _ignored, ...rest } = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as JsonSchema;
  return rest;
}

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const commandRef = (type: CommandType) => ref(`command.${type}`);

function parameters(route: RouteDef): JsonSchema[] {
  const out: JsonSchema[] = [];
  for (const [where, schema] of [['path', route.params], ['query', route.query]] as const) {
    const s = jsonSchema(schema) as { properties?: Record<string, JsonSchema>; required?: string[] };
    for (const [key, prop] of Object.entries(s.properties ?? {})) {
      const name = key === '*' ? 'path' : key;
      out.push({ name, in: where, required: where === 'path' || (s.required ?? []).includes(name), schema: prop });
    }
  }
  return out;
}

const json = (schema: JsonSchema) => ({ content: { 'application/json': { schema } } });
const error = (description: string) => ({ description, ...json(ref('Error')) });

function operation(route: RouteDef): JsonSchema {
  const op: JsonSchema = { summary: route.summary, operationId: `${route.method.toLowerCase()}${route.path.replace(/[^A-Za-z0-9]+/g, '_')}`, parameters: parameters(route) };
  // A route that takes raw bytes (an archive to import) rather than a signed command.
  if (route.consumes) op.requestBody = { required: true, content: { [route.consumes]: { schema: { type: 'string', format: 'binary' } } } };
  if (route.command) {
    const body = route.command === 'any' ? { oneOf: SUBMITTABLE_TYPES.map(commandRef) } : commandRef(route.command);
    op.requestBody = { required: true, description: `A signed command (at most ${MAX_BODY_BYTES} bytes).`, ...json(body) };
    op.responses = {
      200: { description: 'allowed and recorded', ...json(ref('Receipt')) },
      201: { description: 'allowed and recorded; created', ...json(ref('Receipt')) },
      400: { description: 'not a JSON object, addressed to the wrong route (not recorded), or denied by gate 0 (recorded)', ...json(ref('Receipt')) },
      401: { description: 'denied by gate 1: unsigned, forged, unknown key, replayed or expired (recorded)', ...json(ref('Receipt')) },
      403: { description: 'denied by another gate (recorded)', ...json(ref('Receipt')) },
      404: { description: 'the IMVU or zone it names does not exist (recorded)', ...json(ref('Receipt')) },
      413: error(`body larger than ${MAX_BODY_BYTES} bytes (not recorded)`),
      500: error('internal error: nothing was recorded; the same signed command may be resubmitted'),
    };
    if (route.command === 'domain.verify')
      Object.assign(op.responses as JsonSchema, {
        409: { description: 'the token was found but the proof was refused (another IMVU proved it first); both entries recorded', ...json(ref('Receipt')) },
        422: { description: 'not proven: no TXT record with the token at _nexus-challenge.<domain>; the request is recorded, the domain stays pending', ...json(ref('Receipt')) },
        503: error('this daemon has no resolver for domain proofs (root hints); nothing was recorded'),
      });
  } else {
    const content = route.produces ? { content: { [route.produces]: { schema: { type: 'string' } } } } : { content: { 'application/json': { schema: {} } } };
    op.responses = { 200: { description: 'OK', ...content }, 400: error('invalid path or query parameter'), 404: error('not found') };
    if (route.access === 'signed' || route.access === 'metrics') {
      // RFC 9421 has no OpenAPI security scheme type: the requirement is stated in the description.
      op.description =
        route.access === 'signed'
          ? 'A signed read: RFC 9421 Signature-Input and Signature headers, alg="ed25519", keyid = a registered identity id, created within 60 s, a fresh nonce, covering @method and @target-uri (or @path and @query). See docs/API.md.'
          : 'Served to loopback peers; anyone else needs a signed read (RFC 9421) by an admin identity.';
      Object.assign(op.responses as JsonSchema, {
        401: error('unsigned, or the signature is not acceptable (an Accept-Signature header says what is)'),
        403: error('the signer may not read this'),
        429: error('too many signed reads in the last minute'),
      });
    }
  }
  return op;
}

export function openApiDocument(routes: RouteDef[], info: { version: string; serverUrl?: string }): JsonSchema {
  const paths: Record<string, Record<string, JsonSchema>> = {};
  for (const r of routes) {
    // A trailing wildcard (the rest of a tile path, slashes included) is documented as {path}.
    const path = r.path.replace(/:([A-Za-z]+)/g, '{$1}').replace(/\/\*$/, '/{path}');
    (paths[path] ??= {})[r.method.toLowerCase()] = operation(r);
  }
  const schemas: Record<string, JsonSchema> = { Error: jsonSchema(ErrorBody), Receipt: jsonSchema(ReceiptBody) };
  for (const t of SUBMITTABLE_TYPES) schemas[`command.${t}`] = jsonSchema(signedCommandSchema(t));
  return {
    openapi: '3.1.0',
    info: {
      title: 'Nexus COS Infrastructure Core',
      version: info.version,
      description:
        'Every mutation is one signed command passed to the chokepoint; allowed or denied, it is recorded in the ledger. Checkpoints, proofs and the platform key are public; private data is read with an RFC 9421 signature by a registered identity. See docs/API.md.',
    },
    ...(info.serverUrl ? { servers: [{ url: info.serverUrl }] } : {}),
    paths,
    components: { schemas },
  };
}
