/* assets.h - files embedded into the binary at build time (scripts/embed.sh):
 * the OpenAPI document now, the web console later. */
#ifndef JN_ASSETS_H
#define JN_ASSETS_H
#include <stddef.h>

typedef struct jn_asset {
    const char *name;          /* base file name, e.g. "openapi.json" */
    const unsigned char *data; /* NUL-terminated (one byte past len) */
    size_t len;
} jn_asset_t;

/* Terminated by an entry whose name is NULL. */
extern const jn_asset_t jn_assets[];
const jn_asset_t *jn_asset_find(const char *name);
#endif
