/* tls_client.h - the blocking loopback client (plain or OpenSSL) and the
 * self-signed certificate that test_httpd.c and test_net.c share. Their
 * clients run in a pthread against a server on the main thread, so these
 * are plain sockets with a receive timeout: a server that hangs fails the
 * test instead of blocking it. Static inline, so each test compiles it in
 * alone (the Makefile builds a test from its one .c). Include after
 * <cmocka.h>: tls_make_cert asserts. */
#ifndef JN_TEST_TLS_CLIENT_H
#define JN_TEST_TLS_CLIENT_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

/* One connection; a test's own client struct may start with it. */
typedef struct tls_cli {
    int fd;
    SSL_CTX *sctx; /* NULL for a plain connection */
    SSL *ssl;
} tls_cli_t;

/* Allocates |size| zeroed bytes (at least a tls_cli_t, which they start
 * with) and connects them to 127.0.0.1:|port|, with a TLS handshake that
 * verifies nothing when |tls|. Returns NULL when the connection or the
 * handshake fails; free with tls_cli_close. */
static inline void *tls_cli_open(size_t size, int port, bool tls)
{
    tls_cli_t *c = calloc(1, size);
    if (!c)
        return NULL;
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct timeval tv = {5, 0};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(c->fd, (struct sockaddr *)&a, sizeof a) != 0)
        goto fail;
    if (tls) {
        c->sctx = SSL_CTX_new(TLS_client_method());
        SSL_CTX_set_verify(c->sctx, SSL_VERIFY_NONE, NULL);
        c->ssl = SSL_new(c->sctx);
        SSL_set_fd(c->ssl, c->fd);
        if (SSL_connect(c->ssl) != 1)
            goto fail;
    }
    return c;
fail:
    SSL_free(c->ssl);
    SSL_CTX_free(c->sctx);
    close(c->fd);
    free(c);
    return NULL;
}

/* Closes and frees what tls_cli_open returned (NULL is fine). */
static inline void tls_cli_close(void *p)
{
    tls_cli_t *c = p;
    if (!c)
        return;
    SSL_free(c->ssl);
    SSL_CTX_free(c->sctx);
    close(c->fd);
    free(c);
}

/* Writes all of the string |s|; stops quietly when the peer is gone (the
 * test then sees it in what it reads). */
static inline void tls_cli_send(tls_cli_t *c, const char *s)
{
    size_t n = strlen(s), off = 0;
    while (off < n) {
        ssize_t w = c->ssl ? SSL_write(c->ssl, s + off, (int)(n - off)) : send(c->fd, s + off, n - off, MSG_NOSIGNAL);
        if (w <= 0)
            return;
        off += (size_t)w;
    }
}

/* One read of at most |n| bytes: the count, 0 at EOF, -1 on an error or
 * the timeout. */
static inline ssize_t tls_cli_read(tls_cli_t *c, void *b, size_t n)
{
    ssize_t r = c->ssl ? SSL_read(c->ssl, b, (int)n) : recv(c->fd, b, n, 0);
    return r < 0 ? -1 : r;
}

/* Writes a fresh self-signed P-256 certificate for "localhost", valid for
 * an hour, and its key to |dir|/cert.pem and |dir|/key.pem; their paths
 * go to |cert| and |key| (|n| bytes each). */
static inline void tls_make_cert(const char *dir, char *cert, char *key, size_t n)
{
    EVP_PKEY *pk = EVP_EC_gen("P-256");
    assert_non_null(pk);
    X509 *c = X509_new();
    X509_set_version(c, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(c), 1);
    X509_gmtime_adj(X509_getm_notBefore(c), 0);
    X509_gmtime_adj(X509_getm_notAfter(c), 3600);
    X509_set_pubkey(c, pk);
    X509_NAME *name = X509_get_subject_name(c);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1, 0);
    X509_set_issuer_name(c, name);
    assert_true(X509_sign(c, pk, EVP_sha256()) > 0);
    snprintf(cert, n, "%s/cert.pem", dir);
    snprintf(key, n, "%s/key.pem", dir);
    FILE *f = fopen(cert, "w");
    assert_non_null(f);
    PEM_write_X509(f, c);
    fclose(f);
    f = fopen(key, "w");
    assert_non_null(f);
    PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    X509_free(c);
    EVP_PKEY_free(pk);
}

#endif
