/* fs.c - mkdir -p and rm -r for the storage modules (partition logs,
 * streams, queues), written once. */
#include "fs.h"

#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"

int jn_fs_mkdir_p(const char *path)
{
    char tmp[PATH_MAX];
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof tmp)
        return JN_EINVAL;
    memcpy(tmp, path, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (tmp[i] != '/' && tmp[i] != '\0')
            continue;
        char c = tmp[i];
        tmp[i] = '\0';
        if (mkdir(tmp, 0755) < 0 && errno != EEXIST) {
            jn_error("mkdir %s: %s", tmp, strerror(errno));
            return JN_EIO;
        }
        tmp[i] = c;
    }
    return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    if (remove(path) < 0 && errno != ENOENT)
        jn_warn("remove %s: %s", path, strerror(errno));
    return 0;
}

void jn_fs_rm_tree(const char *path)
{
    struct stat st;
    if (stat(path, &st) == 0)
        (void)nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}
