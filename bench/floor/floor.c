/*
 * The bench's floor reference: a minimal single-threaded libfuse3 low-level daemon that
 * serves a static tree from memory, with the cache settings mdevfs's direct backend uses:
 * entries and attributes cached for an hour, every file opened direct_io + noflush,
 * regular files st_size 4096 (as sysfs), symlink targets cached by the kernel
 * (FUSE_CAP_CACHE_SYMLINKS). It does no work per request beyond a hash lookup, so what
 * it costs is what the kernel's FUSE round trips cost on this machine.
 *
 *   floor SOURCE MOUNTPOINT
 *
 * SOURCE is a real directory tree (the bench's tmpfs copy of the mdevfs tree): it is read
 * once, at start, into memory (directories, file contents, link targets, modes). Writes
 * to any file are accepted and change nothing (the create/remove floor is the cost of the
 * same write(2)s, without the tree changing). SIGTERM unmounts and exits.
 */
#define FUSE_USE_VERSION 34
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const double TIMEOUT = 3600.0;

struct node {
    char *name;
    fuse_ino_t parent;
    mode_t mode;
    char *data; /* file contents or link target */
    size_t len;
    fuse_ino_t *kids;
    size_t nkids, cap;
    unsigned nlink;
};

static struct node *nodes; /* nodes[ino - 1] */
static size_t nnodes, nodecap;

/* (parent, name) -> ino, open addressing */
static fuse_ino_t *table;
static size_t tablecap;

static size_t hash(fuse_ino_t parent, const char *name) {
    unsigned long long h = 1469598103934665603ULL ^ parent;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) h = (h ^ *p) * 1099511628211ULL;
    return (size_t)(h ^ (h >> 29));
}

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n);
    if (!q) {
        perror("floor: realloc");
        exit(1);
    }
    return q;
}

static void table_put(fuse_ino_t ino);

static void table_grow(void) {
    fuse_ino_t *old = table;
    size_t oldcap = tablecap;
    tablecap = tablecap ? tablecap * 2 : 1024;
    table = calloc(tablecap, sizeof *table);
    if (!table) {
        perror("floor: calloc");
        exit(1);
    }
    for (size_t i = 0; i < oldcap; i++)
        if (old[i]) table_put(old[i]);
    free(old);
}

static void table_put(fuse_ino_t ino) {
    struct node *n = &nodes[ino - 1];
    size_t i = hash(n->parent, n->name) & (tablecap - 1);
    while (table[i]) i = (i + 1) & (tablecap - 1);
    table[i] = ino;
}

static fuse_ino_t table_get(fuse_ino_t parent, const char *name) {
    size_t i = hash(parent, name) & (tablecap - 1);
    for (; table[i]; i = (i + 1) & (tablecap - 1)) {
        struct node *n = &nodes[table[i] - 1];
        if (n->parent == parent && strcmp(n->name, name) == 0) return table[i];
    }
    return 0;
}

static fuse_ino_t add(fuse_ino_t parent, const char *name, mode_t mode) {
    if (nnodes == nodecap) {
        nodecap = nodecap ? nodecap * 2 : 1024;
        nodes = xrealloc(nodes, nodecap * sizeof *nodes);
    }
    struct node *n = &nodes[nnodes++];
    memset(n, 0, sizeof *n);
    n->name = strdup(name);
    n->parent = parent;
    n->mode = mode;
    n->nlink = S_ISDIR(mode) ? 2 : 1;
    fuse_ino_t ino = nnodes;
    if (parent) {
        struct node *p = &nodes[parent - 1];
        if (p->nkids == p->cap) {
            p->cap = p->cap ? p->cap * 2 : 8;
            p->kids = xrealloc(p->kids, p->cap * sizeof *p->kids);
        }
        p->kids[p->nkids++] = ino;
        if (S_ISDIR(mode)) p->nlink++;
        if (2 * nnodes >= tablecap) table_grow();
        table_put(ino);
    }
    return ino;
}

static void load(const char *path, fuse_ino_t ino) {
    DIR *d = opendir(path);
    if (!d) {
        perror(path);
        exit(1);
    }
    struct dirent *e;
    char sub[4096];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
        struct stat st;
        if (lstat(sub, &st) < 0) {
            perror(sub);
            exit(1);
        }
        fuse_ino_t k = add(ino, e->d_name, st.st_mode);
        struct node *n = &nodes[k - 1];
        if (S_ISDIR(st.st_mode)) {
            load(sub, k);
        } else if (S_ISLNK(st.st_mode)) {
            n->data = xrealloc(NULL, (size_t)st.st_size + 1);
            ssize_t r = readlink(sub, n->data, (size_t)st.st_size + 1);
            if (r < 0) {
                perror(sub);
                exit(1);
            }
            n->data[r] = 0;
            n->len = (size_t)r;
        } else if (st.st_size > 0) {
            int fd = open(sub, O_RDONLY);
            n->data = xrealloc(NULL, (size_t)st.st_size);
            ssize_t r = fd < 0 ? -1 : read(fd, n->data, (size_t)st.st_size);
            if (r < 0) {
                perror(sub);
                exit(1);
            }
            n->len = (size_t)r;
            close(fd);
        }
    }
    closedir(d);
}

static void fill_attr(fuse_ino_t ino, struct stat *st) {
    struct node *n = &nodes[ino - 1];
    memset(st, 0, sizeof *st);
    st->st_ino = ino;
    st->st_mode = n->mode;
    st->st_nlink = n->nlink;
    st->st_size = S_ISREG(n->mode) ? 4096 : 0;
    st->st_blksize = 4096;
}

static struct node *get(fuse_req_t req, fuse_ino_t ino) {
    if (ino < 1 || ino > nnodes) {
        fuse_reply_err(req, ENOENT);
        return NULL;
    }
    return &nodes[ino - 1];
}

static void op_init(void *userdata, struct fuse_conn_info *conn) {
    (void)userdata;
    if (conn->capable & FUSE_CAP_CACHE_SYMLINKS) conn->want |= FUSE_CAP_CACHE_SYMLINKS;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
    fuse_ino_t ino = table_get(parent, name);
    if (!ino) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    struct fuse_entry_param e;
    memset(&e, 0, sizeof e);
    e.ino = ino;
    e.entry_timeout = TIMEOUT;
    e.attr_timeout = TIMEOUT;
    fill_attr(ino, &e.attr);
    fuse_reply_entry(req, &e);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
    (void)fi;
    if (!get(req, ino)) return;
    struct stat st;
    fill_attr(ino, &st);
    fuse_reply_attr(req, &st, TIMEOUT);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set, struct fuse_file_info *fi) {
    (void)attr, (void)to_set;
    op_getattr(req, ino, fi);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino) {
    struct node *n = get(req, ino);
    if (!n) return;
    if (!S_ISLNK(n->mode)) fuse_reply_err(req, EINVAL);
    else fuse_reply_readlink(req, n->data);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
    struct node *n = get(req, ino);
    if (!n) return;
    if (S_ISDIR(n->mode)) {
        fuse_reply_err(req, EISDIR);
        return;
    }
    fi->direct_io = 1;
    fi->noflush = 1;
    fi->fh = ino;
    fuse_reply_open(req, fi);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
    (void)fi;
    struct node *n = get(req, ino);
    if (!n) return;
    if ((size_t)off >= n->len) fuse_reply_buf(req, NULL, 0);
    else fuse_reply_buf(req, n->data + off, n->len - (size_t)off < size ? n->len - (size_t)off : size);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off, struct fuse_file_info *fi) {
    (void)ino, (void)buf, (void)off, (void)fi;
    fuse_reply_write(req, size);
}

static void op_ok(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
    (void)ino, (void)fi;
    fuse_reply_err(req, 0);
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
    struct node *n = get(req, ino);
    if (!n) return;
    if (!S_ISDIR(n->mode)) {
        fuse_reply_err(req, ENOTDIR);
        return;
    }
    /* As mdevfs: the kernel caches the listing and keeps it across opens (this tree never changes). */
    fi->cache_readdir = 1;
    fi->keep_cache = 1;
    fuse_reply_open(req, fi);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
    (void)fi;
    struct node *n = get(req, ino);
    if (!n) return;
    char *buf = malloc(size);
    size_t used = 0;
    struct stat st;
    memset(&st, 0, sizeof st);
    /* offset i: "." is 0, ".." is 1, child k is k + 2 */
    for (size_t i = (size_t)off; i < n->nkids + 2; i++) {
        const char *name;
        if (i == 0) {
            name = ".";
            st.st_ino = ino;
            st.st_mode = S_IFDIR;
        } else if (i == 1) {
            name = "..";
            st.st_ino = n->parent ? n->parent : ino;
            st.st_mode = S_IFDIR;
        } else {
            fuse_ino_t k = n->kids[i - 2];
            name = nodes[k - 1].name;
            st.st_ino = k;
            st.st_mode = nodes[k - 1].mode;
        }
        size_t need = fuse_add_direntry(req, buf + used, size - used, name, &st, (off_t)(i + 1));
        if (need > size - used) break;
        used += need;
    }
    fuse_reply_buf(req, buf, used);
    free(buf);
}

static const struct fuse_lowlevel_ops ops = {
    .init = op_init,
    .lookup = op_lookup,
    .getattr = op_getattr,
    .setattr = op_setattr,
    .readlink = op_readlink,
    .open = op_open,
    .read = op_read,
    .write = op_write,
    .flush = op_ok,
    .release = op_ok,
    .opendir = op_opendir,
    .readdir = op_readdir,
    .releasedir = op_ok,
};

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: floor SOURCE MOUNTPOINT\n");
        return 2;
    }
    add(0, "", S_IFDIR | 0755);
    table_grow();
    load(argv[1], 1);
    char *fargv[] = {argv[0], "-o", "allow_other,fsname=mdevfs-floor,subtype=floor", NULL};
    struct fuse_args args = FUSE_ARGS_INIT(3, fargv);
    struct fuse_session *se = fuse_session_new(&args, &ops, sizeof ops, NULL);
    if (!se) return 1;
    if (fuse_set_signal_handlers(se) != 0) return 1;
    if (fuse_session_mount(se, argv[2]) != 0) return 1;
    fprintf(stderr, "floor: %zu nodes from %s on %s\n", nnodes, argv[1], argv[2]);
    int ret = fuse_session_loop(se);
    fuse_session_unmount(se);
    fuse_remove_signal_handlers(se);
    fuse_session_destroy(se);
    return ret ? 1 : 0;
}
