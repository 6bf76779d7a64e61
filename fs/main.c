/* stagefs: mount a werf stages storage (:local or a registry repository) as OCI layouts. */
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "addr.h"
#include "cache.h"
#include "config.h"
#include "docker.h"
#include "docker_storage.h"
#include "registry.h"
#include "registry_storage.h"
#include "stagefs.h"

struct options {
	char *storage;
	int nonopts;
	char *project;
	char *docker_host;
	char *docker_config;
	char *werf_home;
	char *cache_dir;
	int insecure;
	unsigned ttl;
	unsigned cache_size_mb;
	int help;
	int version;
};

#define OPT(t, p)                                                                                  \
	{                                                                                          \
		t, offsetof(struct options, p), 1                                                  \
	}
static const struct fuse_opt option_spec[] = {
    OPT("project=%s", project),
    OPT("docker_host=%s", docker_host),
    OPT("docker_config=%s", docker_config),
    OPT("werf_home=%s", werf_home),
    OPT("cache_dir=%s", cache_dir),
    OPT("insecure", insecure),
    OPT("ttl=%u", ttl),
    OPT("cache_size=%u", cache_size_mb),
    OPT("-h", help),
    OPT("--help", help),
    OPT("-V", version),
    OPT("--version", version),
    FUSE_OPT_END,
};

static void log_dropped(void *ud, const char *project, const char *stage, const char *missing)
{
	stagefs_log("%s%s%s: pending stage dropped at unmount, nothing committed (it lacked %s)",
		    project, project[0] ? "/" : "", stage, missing);
}

static void usage(const char *prog)
{
	printf("usage: %s [-f] [-o OPT,...] STORAGE MOUNTPOINT\n"
	       "       fusermount3 -u MOUNTPOINT\n"
	       "\n"
	       "STORAGE is :local or a registry repository HOST[:PORT]/PATH.\n"
	       "\n"
	       "stagefs options:\n"
	       "    -o project=P           :local: show project P's stages at the root\n"
	       "    -o docker_host=URL     Docker daemon (default $DOCKER_HOST, else\n"
	       "                           unix:///var/run/docker.sock)\n"
	       "    -o docker_config=DIR   Docker config with registry credentials (default\n"
	       "                           $DOCKER_CONFIG, else ~/.docker)\n"
	       "    -o insecure            allow plain HTTP and unverified TLS\n"
	       "    -o werf_home=DIR       werf's home (default $WERF_HOME, else ~/.werf)\n"
	       "    -o cache_dir=DIR       blob cache (default $XDG_CACHE_HOME/stagefs, else\n"
	       "                           ~/.cache/stagefs)\n"
	       "    -o cache_size=MB       blob cache size cap in MiB (default 4096)\n"
	       "    -o ttl=SECONDS         how stale a listing may be (default 5)\n"
	       "\n",
	       prog);
}

static int opt_proc(void *data, const char *arg, int key, struct fuse_args *outargs)
{
	struct options *o = data;

	if (key == FUSE_OPT_KEY_NONOPT && o->nonopts++ == 0) {
		o->storage = strdup(arg);
		return 0;
	}
	return 1;
}

static char *home_path(const char *env, const char *fallback_rel)
{
	const char *v = getenv(env);
	const char *home = getenv("HOME");
	char *out = NULL;

	if (v && *v)
		return strdup(v);
	if (asprintf(&out, "%s/%s", home && *home ? home : "/root", fallback_rel) < 0)
		return NULL;
	return out;
}

static char *default_cache_dir(void)
{
	const char *xdg = getenv("XDG_CACHE_HOME");
	char *out = NULL;

	if (xdg && *xdg) {
		if (asprintf(&out, "%s/stagefs", xdg) < 0)
			return NULL;
		return out;
	}
	return home_path("STAGEFS_CACHE_DIR_UNSET", ".cache/stagefs");
}

/* path as an absolute path (frees path); NULL for NULL or no memory. */
static char *absolute(char *path)
{
	char cwd[4096], *out = NULL;

	if (!path || path[0] == '/')
		return path;
	if (getcwd(cwd, sizeof(cwd)) && asprintf(&out, "%s/%s", cwd, path) < 0)
		out = NULL;
	free(path);
	return out;
}

int main(int argc, char *argv[])
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct options o = {.ttl = 5, .cache_size_mb = 4096};
	struct stagefs ctx = {0};
	struct storage *backend = NULL;
	struct addr a = {0};
	struct sf_err err = {0};
	int r, ret = 1;

	if (fuse_opt_parse(&args, &o, option_spec, opt_proc) < 0)
		return 1;
	if (o.version) {
		printf("stagefs %s\n", PACKAGE_VERSION);
		fuse_opt_add_arg(&args, "--version");
		fuse_main(args.argc, args.argv, &stagefs_ops, NULL);
		ret = 0;
		goto out;
	}
	if (o.help) {
		usage(argv[0]);
		fuse_opt_add_arg(&args, "--help");
		args.argv[0][0] = '\0';
		fuse_main(args.argc, args.argv, &stagefs_ops, NULL);
		ret = 0;
		goto out;
	}
	if (!o.storage || o.nonopts != 2) {
		fprintf(stderr, "stagefs: need STORAGE and MOUNTPOINT (see --help)\n");
		ret = 2;
		goto out;
	}
	r = addr_parse(o.storage, &a, &err);
	if (r < 0) {
		fprintf(stderr, "stagefs: %s\n", err_msg(&err, r));
		ret = 2;
		goto out;
	}
	if (o.project && !name_project_valid(o.project)) {
		fprintf(stderr, "stagefs: project=%s: not a werf project name\n", o.project);
		ret = 2;
		goto out;
	}
	if (!o.docker_config)
		o.docker_config = home_path("DOCKER_CONFIG", ".docker");
	if (!o.cache_dir)
		o.cache_dir = default_cache_dir();
	/* Without -f the daemon moves to /: relative paths must be made absolute first. */
	o.docker_config = absolute(o.docker_config);
	o.cache_dir = absolute(o.cache_dir);
	if (!o.docker_config || !o.cache_dir) {
		fprintf(stderr, "stagefs: out of memory\n");
		goto out;
	}

	if (!o.werf_home)
		o.werf_home = home_path("WERF_HOME", ".werf");
	o.werf_home = absolute(o.werf_home);
	if (!o.werf_home) {
		fprintf(stderr, "stagefs: out of memory\n");
		goto out;
	}
	ctx.werf_home = o.werf_home;
	pthread_mutex_init(&ctx.lock, NULL);

	r = blobcache_new(o.cache_dir, (uint64_t)o.cache_size_mb << 20, &ctx.blobs, &err);
	if (r < 0) {
		fprintf(stderr, "stagefs: %s\n", err_msg(&err, r));
		goto out;
	}
	unsigned stale = 0;
	r = pending_new(o.cache_dir, &ctx.pending, &stale, &err);
	if (r < 0) {
		fprintf(stderr, "stagefs: %s\n", err_msg(&err, r));
		goto out;
	}
	if (stale)
		stagefs_log("removed %u pending stage(s) left by a daemon that died (nothing of them "
			    "was committed)",
			    stale);
	if (a.local) {
		struct docker *d = NULL;
		r = docker_new(o.docker_host, &d, &err);
		if (r == 0)
			r = docker_storage_new(d, o.project, o.cache_dir,
					       (uint64_t)o.cache_size_mb << 20, &backend, &err);
		if (r < 0) {
			docker_free(d);
			fprintf(stderr, "stagefs: %s\n", err_msg(&err, r));
			goto out;
		}
	} else {
		struct registry_opts ropts = {
		    .insecure = o.insecure,
		    .docker_config_dir = o.docker_config,
		};
		struct registry *reg = NULL;
		r = registry_new(&a, &ropts, &reg, &err);
		if (r < 0) {
			fprintf(stderr, "stagefs: %s\n", err_msg(&err, r));
			goto out;
		}
		r = registry_storage_new(reg, &backend);
		if (r < 0) {
			registry_free(reg);
			fprintf(stderr, "stagefs: %s\n", strerror(-r));
			goto out;
		}
	}
	r = cache_storage_new(backend, (uint64_t)o.ttl * 1000, &ctx.st);
	if (r < 0) {
		storage_free(backend);
		fprintf(stderr, "stagefs: %s\n", strerror(-r));
		goto out;
	}
	if (o.project && !a.local)
		stagefs_log("project=%s is ignored: a registry repository holds one project",
			    o.project);
	ctx.by_project = ctx.st->by_project;
	ctx.uid = getuid();
	ctx.gid = getgid();
	clock_gettime(CLOCK_REALTIME, &ctx.mounted);

	/* libfuse 3.14's fuse_main leaves max_idle_threads unset and complains; give it a value. */
	fuse_opt_insert_arg(&args, 1, "-omax_threads=16,max_idle_threads=8");
	ret = fuse_main(args.argc, args.argv, &stagefs_ops, &ctx);
out:
	/* Unmounted: running downloads and exports stop now instead of finishing for nobody. */
	if (ctx.st)
		storage_cancel(ctx.st);
	/* fuse_main has freed its struct fuse: nothing more to invalidate. */
	ctx.fuse = NULL;
	if (ctx.pending)
		pending_on_retire(ctx.pending, NULL, NULL);
	pending_free(ctx.pending, log_dropped, NULL);
	blobcache_free(ctx.blobs);
	storage_free(ctx.st);
	addr_done(&a);
	fuse_opt_free_args(&args);
	free(o.storage);
	free(o.project);
	free(o.docker_host);
	free(o.docker_config);
	free(o.werf_home);
	free(o.cache_dir);
	for (size_t i = 0; i < ctx.n_made; i++)
		free(ctx.made_projects[i]);
	free(ctx.made_projects);
	return ret;
}
