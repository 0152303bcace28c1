/* fs.h - small filesystem helpers shared by the storage modules. */
#ifndef JN_FS_H
#define JN_FS_H

#include "error.h"

/* Creates |path| and every missing parent (mode 0755), like mkdir -p.
 * Returns 0, JN_EINVAL (empty or longer than PATH_MAX), or JN_EIO (logged
 * with the directory that could not be made). */
int jn_fs_mkdir_p(const char *path) JN_MUST_CHECK;

/* Removes |path| and everything below it (files, directories), without
 * following symbolic links. A missing |path| is not an error; entries that
 * cannot be removed are logged and skipped. */
void jn_fs_rm_tree(const char *path);

#endif
