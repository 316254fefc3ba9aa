// Batched UDP for the authoritative server: recvmmsg(2) and sendmmsg(2) on a duplicate of a
// bound Node dgram socket's descriptor, so that one wake-up and one call into JavaScript carry
// up to BATCH datagrams each way. Node's dgram makes one system call, one buffer and one call
// into JavaScript per datagram, which cost about as much as answering from the cache
// (bench/RESULTS.md, dns). Everything else about the socket (binding, sharing it with worker
// processes, closing) stays Node's.
//
// JavaScript owns every buffer (passed to open): the receive area (BATCH slots of SLOT bytes),
// the receive table (per datagram: length, sequence number, port, address-text length,
// truncated), the address texts (inet_ntop, ADDR bytes per slot), the send area and the send
// table (per answer: offset, length, sequence number). A reply names its destination by the
// query's sequence number: the sender's address stays here in a ring of RING entries, and a
// sequence number no longer in the ring (more than RING datagrams arrived since) is not sent.
#define _GNU_SOURCE
#define NAPI_VERSION 8
#include <node_api.h>
#include <uv.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BATCH 64
#define SLOT 4096
#define ADDR 48
#define RMETA 5
#define RING 65536
#define SEND_MAX 256
#define SMETA 3
// Rounds of BATCH per wake-up: the rest waits for the next turn of the event loop, so that TCP
// and timers are served during a flood.
#define ROUNDS 4

typedef union {
  struct sockaddr sa;
  struct sockaddr_in v4;
  struct sockaddr_in6 v6;
} peer_addr;

typedef struct {
  uv_poll_t poll;
  int fd;
  int closed;
  // Freed once both are done: libuv has closed the poll handle, and JavaScript holds no reference
  // (a call after close() still finds the memory and returns at once).
  int uv_closed;
  int finalized;
  napi_env env;
  napi_ref cb;
  napi_ref bufs[5];
  napi_async_context async;
  uint8_t *rbuf;
  int32_t *rmeta;
  uint8_t *raddr;
  uint8_t *sbuf;
  size_t sbuf_len;
  int32_t *smeta;
  uint32_t seq;
  peer_addr ring[RING];
  uint32_t ring_seq[RING];
  double stale;
  double dropped;
  double batches;
} ctx;

#define CHECK(call)                                                       \
  do {                                                                    \
    if ((call) != napi_ok) {                                              \
      napi_throw_error(env, NULL, "udp_batch: N-API call failed: " #call); \
      return NULL;                                                        \
    }                                                                     \
  } while (0)

static void *bytes_of(napi_env env, napi_value v, size_t need) {
  bool is;
  void *data = NULL;
  size_t len = 0;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is) return NULL;
  napi_typedarray_type type;
  napi_value ab;
  size_t off, n;
  if (napi_get_typedarray_info(env, v, &type, &n, &data, &ab, &off) != napi_ok) return NULL;
  size_t el = type == napi_int32_array ? 4 : 1;
  if (type != napi_int32_array && type != napi_uint8_array) return NULL;
  len = n * el;
  if (len < need) return NULL;
  return data;
}

static void on_closed(uv_handle_t *h) {
  ctx *c = h->data;
  c->uv_closed = 1;
  if (c->finalized) free(c);
}

static void stop(ctx *c) {
  if (c->closed) return;
  c->closed = 1;
  uv_poll_stop(&c->poll);
  close(c->fd);
  napi_delete_reference(c->env, c->cb);
  for (int i = 0; i < 5; i++) napi_delete_reference(c->env, c->bufs[i]);
  napi_async_destroy(c->env, c->async);
  uv_close((uv_handle_t *)&c->poll, on_closed);
}

static void on_readable(uv_poll_t *h, int status, int events) {
  (void)events;
  ctx *c = h->data;
  if (c->closed || status < 0) return;
  napi_env env = c->env;
  struct mmsghdr msgs[BATCH];
  struct iovec iov[BATCH];
  peer_addr from[BATCH];
  for (int round = 0; round < ROUNDS && !c->closed; round++) {
    for (int i = 0; i < BATCH; i++) {
      iov[i].iov_base = c->rbuf + (size_t)i * SLOT;
      iov[i].iov_len = SLOT;
      memset(&msgs[i].msg_hdr, 0, sizeof msgs[i].msg_hdr);
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
      msgs[i].msg_hdr.msg_name = &from[i];
      msgs[i].msg_hdr.msg_namelen = sizeof from[i];
    }
    int n = recvmmsg(c->fd, msgs, BATCH, MSG_DONTWAIT, NULL);
    if (n <= 0) return;  // EAGAIN (another process took them) or an error Node's socket reports
    for (int i = 0; i < n; i++) {
      uint32_t seq = c->seq++;
      uint32_t r = seq & (RING - 1);
      c->ring[r] = from[i];
      c->ring_seq[r] = seq;
      int32_t *m = c->rmeta + i * RMETA;
      char *text = (char *)c->raddr + i * ADDR;
      int port = 0;
      text[0] = 0;
      if (from[i].sa.sa_family == AF_INET) {
        inet_ntop(AF_INET, &from[i].v4.sin_addr, text, ADDR);
        port = ntohs(from[i].v4.sin_port);
      } else if (from[i].sa.sa_family == AF_INET6) {
        inet_ntop(AF_INET6, &from[i].v6.sin6_addr, text, ADDR);
        port = ntohs(from[i].v6.sin6_port);
      }
      m[0] = (int32_t)msgs[i].msg_len;
      m[1] = (int32_t)seq;
      m[2] = port;
      m[3] = (int32_t)strlen(text);
      m[4] = (msgs[i].msg_hdr.msg_flags & MSG_TRUNC) ? 1 : 0;
    }
    c->batches++;
    napi_handle_scope scope;
    if (napi_open_handle_scope(env, &scope) != napi_ok) return;
    napi_value cb, recv, argv[1], result;
    napi_get_reference_value(env, c->cb, &cb);
    napi_get_global(env, &recv);
    napi_create_int32(env, n, &argv[0]);
    // Through a callback scope: the promises the batch started run before the next wake-up.
    napi_status st = napi_make_callback(env, c->async, recv, cb, 1, argv, &result);
    if (st == napi_pending_exception) {
      napi_value err;
      napi_get_and_clear_last_exception(env, &err);
      napi_fatal_exception(env, err);
    }
    napi_close_handle_scope(env, scope);
    if (n < BATCH) return;
  }
}

// open(fd, onBatch, recvArea, recvTable, addrTexts, sendArea, sendTable) -> External
static void finalize_ctx(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  ctx *c = data;
  c->finalized = 1;
  // A handle never closed keeps polling (its callback referenced) and lives with the loop.
  if (c->uv_closed) free(c);
}

static napi_value js_open(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 7) {
    napi_throw_type_error(env, NULL, "udp_batch.open: 7 arguments");
    return NULL;
  }
  int32_t fd;
  CHECK(napi_get_value_int32(env, argv[0], &fd));
  napi_valuetype t;
  CHECK(napi_typeof(env, argv[1], &t));
  if (t != napi_function) {
    napi_throw_type_error(env, NULL, "udp_batch.open: onBatch is not a function");
    return NULL;
  }
  ctx *c = calloc(1, sizeof *c);
  if (!c) {
    napi_throw_error(env, NULL, "udp_batch.open: out of memory");
    return NULL;
  }
  c->rbuf = bytes_of(env, argv[2], (size_t)BATCH * SLOT);
  c->rmeta = bytes_of(env, argv[3], (size_t)BATCH * RMETA * 4);
  c->raddr = bytes_of(env, argv[4], (size_t)BATCH * ADDR);
  c->sbuf = bytes_of(env, argv[5], 65536);
  c->smeta = bytes_of(env, argv[6], (size_t)SEND_MAX * SMETA * 4);
  if (!c->rbuf || !c->rmeta || !c->raddr || !c->sbuf || !c->smeta) {
    free(c);
    napi_throw_range_error(env, NULL, "udp_batch.open: a buffer is missing or too small");
    return NULL;
  }
  {
    napi_typedarray_type type;
    size_t n, off;
    void *d;
    napi_value ab;
    napi_get_typedarray_info(env, argv[5], &type, &n, &d, &ab, &off);
    c->sbuf_len = n;
  }
  c->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (c->fd < 0) {
    free(c);
    napi_throw_error(env, NULL, "udp_batch.open: cannot duplicate the socket");
    return NULL;
  }
  c->env = env;
  // Every step before polling starts can fail; none may leave the duplicate descriptor behind.
  int refs = 0;
  napi_value name;
  uv_loop_t *loop;
  napi_status st = napi_create_reference(env, argv[1], 1, &c->cb);
  for (; st == napi_ok && refs < 5; refs++) st = napi_create_reference(env, argv[2 + refs], 1, &c->bufs[refs]);
  if (st == napi_ok) st = napi_create_string_utf8(env, "nexus.udpBatch", NAPI_AUTO_LENGTH, &name);
  if (st == napi_ok) st = napi_async_init(env, NULL, name, &c->async);
  if (st == napi_ok) st = napi_get_uv_event_loop(env, &loop);
  if (st != napi_ok || uv_poll_init(loop, &c->poll, c->fd) != 0) {
    if (c->cb) napi_delete_reference(env, c->cb);
    for (int i = 0; i < refs && c->bufs[i]; i++) napi_delete_reference(env, c->bufs[i]);
    if (c->async) napi_async_destroy(env, c->async);
    close(c->fd);
    free(c);
    napi_throw_error(env, NULL, "udp_batch.open: cannot poll the socket");
    return NULL;
  }
  c->poll.data = c;
  uv_poll_start(&c->poll, UV_READABLE, on_readable);
  napi_value ext;
  CHECK(napi_create_external(env, c, finalize_ctx, NULL, &ext));
  return ext;
}

static ctx *ctx_of(napi_env env, napi_value v) {
  void *p = NULL;
  if (napi_get_value_external(env, v, &p) != napi_ok) return NULL;
  return p;
}

// flush(handle, count) -> answers sent. Stale sequence numbers and answers the kernel would not
// take (send buffer full) are counted, not retried: UDP is allowed to lose them, and a retry
// would hold the loop.
static napi_value js_flush(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  ctx *c = ctx_of(env, argv[0]);
  int32_t count;
  CHECK(napi_get_value_int32(env, argv[1], &count));
  napi_value out;
  if (!c || c->closed || count <= 0 || count > SEND_MAX) {
    CHECK(napi_create_int32(env, 0, &out));
    return out;
  }
  struct mmsghdr msgs[SEND_MAX];
  struct iovec iov[SEND_MAX];
  int k = 0;
  for (int i = 0; i < count; i++) {
    int32_t *m = c->smeta + i * SMETA;
    uint32_t off = (uint32_t)m[0], len = (uint32_t)m[1], seq = (uint32_t)m[2];
    uint32_t r = seq & (RING - 1);
    if (c->ring_seq[r] != seq || (size_t)off + len > c->sbuf_len) {
      c->stale++;
      continue;
    }
    iov[k].iov_base = c->sbuf + off;
    iov[k].iov_len = len;
    memset(&msgs[k].msg_hdr, 0, sizeof msgs[k].msg_hdr);
    msgs[k].msg_hdr.msg_iov = &iov[k];
    msgs[k].msg_hdr.msg_iovlen = 1;
    msgs[k].msg_hdr.msg_name = &c->ring[r];
    msgs[k].msg_hdr.msg_namelen = c->ring[r].sa.sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    k++;
  }
  int sent = 0;
  while (sent < k) {
    int n = sendmmsg(c->fd, msgs + sent, k - sent, MSG_DONTWAIT);
    if (n > 0) {
      sent += n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    // A destination the kernel refuses (unreachable, EPERM) is skipped; a full buffer ends the batch.
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
      c->dropped++;
      sent++;
      continue;
    }
    c->dropped += k - sent;
    break;
  }
  CHECK(napi_create_int32(env, sent, &out));
  return out;
}

static napi_value js_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  ctx *c = ctx_of(env, argv[0]);
  if (c) stop(c);
  return NULL;
}

// stats(handle) -> [batches, stale, dropped]
static napi_value js_stats(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  ctx *c = ctx_of(env, argv[0]);
  napi_value arr, v;
  CHECK(napi_create_array_with_length(env, 3, &arr));
  double f[3] = {c ? c->batches : 0, c ? c->stale : 0, c ? c->dropped : 0};
  for (int i = 0; i < 3; i++) {
    CHECK(napi_create_double(env, f[i], &v));
    CHECK(napi_set_element(env, arr, i, v));
  }
  return arr;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_value fn, v;
  CHECK(napi_create_function(env, "open", NAPI_AUTO_LENGTH, js_open, NULL, &fn));
  CHECK(napi_set_named_property(env, exports, "open", fn));
  CHECK(napi_create_function(env, "flush", NAPI_AUTO_LENGTH, js_flush, NULL, &fn));
  CHECK(napi_set_named_property(env, exports, "flush", fn));
  CHECK(napi_create_function(env, "close", NAPI_AUTO_LENGTH, js_close, NULL, &fn));
  CHECK(napi_set_named_property(env, exports, "close", fn));
  CHECK(napi_create_function(env, "stats", NAPI_AUTO_LENGTH, js_stats, NULL, &fn));
  CHECK(napi_set_named_property(env, exports, "stats", fn));
  const int32_t consts[7] = {BATCH, SLOT, ADDR, RMETA, SEND_MAX, SMETA, RING};
  const char *names[7] = {"BATCH", "SLOT", "ADDR", "RMETA", "SEND_MAX", "SMETA", "RING"};
  for (int i = 0; i < 7; i++) {
    CHECK(napi_create_int32(env, consts[i], &v));
    CHECK(napi_set_named_property(env, exports, names[i], v));
  }
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
