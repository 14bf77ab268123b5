/*
 * The sealer's and verifier's hot path in C: RFC 9162 leaf hashes of every
 * LF-terminated line of a batch and the Merkle root over them. From
 * JavaScript each SHA-256 call costs ~1 µs of binding overhead on Node 20
 * (2 million calls for a million events); here the same OpenSSL SHA-256 that
 * node:crypto uses (the symbols node exports, SHA-NI where the CPU has it) runs
 * in one call per batch. The JS implementation in merkle.ts is the reference
 * and the fallback; both are tested to agree.
 */
#define OPENSSL_SUPPRESS_DEPRECATED 1
#include <node_api.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(call)                                   \
  if ((call) != napi_ok) {                            \
    napi_throw_error(env, NULL, "viw_merkle: " #call); \
    return NULL;                                      \
  }

static void leaf(const unsigned char* data, size_t len, unsigned char* out) {
  SHA256_CTX c;
  static const unsigned char zero = 0;
  SHA256_Init(&c);
  SHA256_Update(&c, &zero, 1);
  SHA256_Update(&c, data, len);
  SHA256_Final(out, &c);
}

static void node(const unsigned char* l, const unsigned char* r, unsigned char* out) {
  /* SHA256_Init/Update/Final, not SHA256(): in OpenSSL 3 the one-shot call fetches an EVP method each time (~1 µs). */
  static const unsigned char one = 1;
  SHA256_CTX c;
  SHA256_Init(&c);
  SHA256_Update(&c, &one, 1);
  SHA256_Update(&c, l, 32);
  SHA256_Update(&c, r, 32);
  SHA256_Final(out, &c);
}

/* leafHashesOfLines(buf, from): leaf hashes (32 bytes each) of the LF-terminated lines of buf[from..]; an unterminated last line counts as a line. */
static napi_value leaf_hashes_of_lines(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  unsigned char* buf;
  size_t len;
  CHECK(napi_get_buffer_info(env, argv[0], (void**)&buf, &len));
  int64_t from64 = 0;
  if (argc > 1) CHECK(napi_get_value_int64(env, argv[1], &from64));
  size_t from = from64 < 0 ? 0 : (size_t)from64;
  if (from > len) from = len;
  size_t count = 0;
  for (size_t i = from; i < len; i++)
    if (buf[i] == '\n') count++;
  if (len > from && buf[len - 1] != '\n') count++;
  unsigned char* out;
  napi_value result;
  CHECK(napi_create_buffer(env, count * 32 > 0 ? count * 32 : 0, (void**)&out, &result));
  size_t at = from, k = 0;
  while (at < len) {
    const unsigned char* lf = memchr(buf + at, '\n', len - at);
    size_t end = lf ? (size_t)(lf - buf) : len;
    leaf(buf + at, end - at, out + 32 * k++);
    at = end + 1;
  }
  return result;
}

/* rootOfLeaves(leaves): RFC 9162 root over 32-byte leaf hashes (empty: SHA-256 of nothing). */
static napi_value root_of_leaves(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  unsigned char* leaves;
  size_t len;
  CHECK(napi_get_buffer_info(env, argv[0], (void**)&leaves, &len));
  unsigned char* out;
  napi_value result;
  CHECK(napi_create_buffer(env, 32, (void**)&out, &result));
  size_t n = len / 32;
  if (n == 0) {
    SHA256_CTX c;
    SHA256_Init(&c);
    SHA256_Final(out, &c);
    return result;
  }
  unsigned char* level = malloc(n * 32);
  if (!level) {
    napi_throw_error(env, NULL, "viw_merkle: out of memory");
    return NULL;
  }
  memcpy(level, leaves, n * 32);
  /* Bottom-up, in place: pairs hashed, an odd last node carried up unchanged (equals the RFC's split). */
  while (n > 1) {
    size_t j = 0;
    for (size_t i = 0; i + 1 < n; i += 2) node(level + 32 * i, level + 32 * (i + 1), level + 32 * j++);
    if (n % 2) memmove(level + 32 * j++, level + 32 * (n - 1), 32);
    n = j;
  }
  memcpy(out, level, 32);
  free(level);
  return result;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"leafHashesOfLines", NULL, leaf_hashes_of_lines, NULL, NULL, NULL, napi_default, NULL},
      {"rootOfLeaves", NULL, root_of_leaves, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, 2, props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
