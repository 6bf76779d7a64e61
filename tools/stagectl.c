/* stagectl: werf's stages commands (sync, switch-from-local, rollback) plus ls and verify, done
 * through private stagefs mounts. This file: options, defaults, dispatch, and the helpers the
 * commands share. */
#include "stagectl.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "addr.h"
#include "config.h"
#include "defaults.h"
#include "interrupt.h"
#include "mounts.h"
#include "name.h"
#include "sync.h"

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: stagectl sync --from STORAGE --to STORAGE [--project P]... [--all-projects]\n"
	    "                     [--remove-source] [--dry-run] [--jobs N] [--json]\n"
	    "       stagectl switch-from-local --to REPO [--project P] [--timeout S]\n"
	    "       stagectl rollback --from REPO [--project P]\n"
	    "       stagectl ls STORAGE [--project P] [--sort name|time|size] [--reverse] "
	    "[--json]\n"
	    "       stagectl verify --from STORAGE --to STORAGE [--project P]... [--json]\n"
	    "\n"
	    "STORAGE is :local or a registry repository HOST[:PORT]/PATH.\n"
	    "common options:\n"
	    "  --project P        werf project (default: project: of werf.yaml in --dir)\n"
	    "  --dir DIR          where werf.yaml is (default: the current directory)\n"
	    "  --home-dir DIR     werf's home (default $WERF_HOME, else ~/.werf)\n"
	    "  --insecure         plain HTTP or unverified TLS to the registry\n"
	    "  --docker-host URL  Docker daemon (default $DOCKER_HOST)\n"
	    "  --docker-config D  Docker config with registry credentials (default "
	    "$DOCKER_CONFIG)\n"
	    "  --jobs N           stages at a time (default %d here)\n"
	    "  --timeout S        how long to wait for werf's locks (default: forever)\n"
	    "--to defaults to $WERF_STAGES_STORAGE when it names a repository, else\n"
	    "$CI_REGISTRY_IMAGE/stages. Exit status: 0 done, 1 failed, 2 usage.\n",
	    sync_default_jobs());
}

bool stagectl_is_local(const char *storage)
{
	return strcmp(storage, WERF_LOCAL_ADDRESS) == 0;
}

const char *stagectl_mount(const struct stagectl *c, const char *storage,
			   enum stagectl_mount_mode mode)
{
	struct mounts_opts o = {
	    .docker_host = c->docker_host,
	    .docker_config = c->docker_config,
	    .werf_home = c->home,
	    .insecure = c->insecure,
	    .read_only = mode == STAGECTL_RO,
	};
	struct mounts_mount *m;
	struct sf_err err = {0};
	int r;

	if (mode == STAGECTL_RW_SWITCH && stagectl_is_local(storage)) {
		/* A werf home with no block in it: this mount is stagectl's own, used while it
		 * holds werf's exclusive project lock. */
		o.werf_home = mounts_private_dir("werf-home");
		if (!o.werf_home) {
			fprintf(stderr, "stagectl: cannot make a private directory\n");
			return NULL;
		}
	}
	r = mounts_start(storage, &o, &m, &err);
	if (r < 0) {
		fprintf(stderr, "stagectl: mounting %s: %s\n", storage, err_msg(&err, r));
		return NULL;
	}
	return mounts_path(m);
}

struct wait_ctx {
	const struct stagectl *c;
	const char *project;
	bool said;
};

static int on_lock_wait(const char *name, long waited_ms, void *ud)
{
	struct wait_ctx *w = ud;

	if (interrupt_requested())
		return 1;
	/* core's first call may come with waited_ms 1 or 2, not 0: say it once by a flag */
	if (!w->said && (w->said = true))
		fprintf(stderr,
			"stagectl: waiting for werf's lock %s (running werf builds or cleanups of "
			"%s hold it)%s\n",
			name, w->project,
			w->c->timeout_s >= 0 ? "" : "; --timeout S stops waiting");
	return 0;
}

struct werf_lock *stagectl_lock(const struct stagectl *c, const char *project,
				enum werf_lock_mode mode)
{
	char name[128];
	struct werf_lock *l = NULL;
	struct sf_err err = {0};
	struct wait_ctx w = {c, project, false};
	int r;

	werf_lock_name_stages_and_images(project, name, sizeof(name));
	r = werf_lock_acquire(c->home, name, mode, c->timeout_s < 0 ? -1 : c->timeout_s * 1000,
			      on_lock_wait, &w, &l, &err);
	if (r < 0) {
		if (r == -ECANCELED)
			fprintf(stderr, "stagectl: interrupted while waiting for werf's lock %s\n",
				name);
		else if (r == -ETIMEDOUT)
			fprintf(
			    stderr,
			    "stagectl: werf's lock %s is still held after %ld s (werf builds of "
			    "%s are running); try again later\n",
			    name, c->timeout_s, project);
		else
			fprintf(stderr, "stagectl: werf's lock %s: %s\n", name, err_msg(&err, r));
		return NULL;
	}
	return l;
}

void stagectl_json_print(json_t *o, size_t flags, FILE *f)
{
	if (o)
		json_dumpf(o, f, flags);
	else
		fputs("null", f);
	fputc('\n', f);
	json_decref(o);
}

static int check_storage(const char *what, const char *s)
{
	struct addr a;
	struct sf_err err = {0};
	int r = addr_parse(s, &a, &err);

	if (r < 0) {
		fprintf(stderr, "stagectl: %s %s: %s\n", what, s, err_msg(&err, r));
		return -1;
	}
	addr_done(&a);
	return 0;
}

/* --to's default (defaults_repo) from the environment. */
static const char *default_repo(char *buf, size_t n)
{
	return defaults_repo(getenv("WERF_STAGES_STORAGE"), getenv("CI_REGISTRY_IMAGE"), buf, n);
}

enum {
	OPT_FROM = 256,
	OPT_TO,
	OPT_PROJECT,
	OPT_ALL,
	OPT_REMOVE,
	OPT_DRY,
	OPT_JOBS,
	OPT_JSON,
	OPT_TIMEOUT,
	OPT_HOME,
	OPT_DIR,
	OPT_INSECURE,
	OPT_DHOST,
	OPT_DCONFIG,
	OPT_SORT,
	OPT_REVERSE,
	OPT_HELP,
};

static const struct option long_opts[] = {
    {"from", required_argument, NULL, OPT_FROM},
    {"to", required_argument, NULL, OPT_TO},
    {"project", required_argument, NULL, OPT_PROJECT},
    {"all-projects", no_argument, NULL, OPT_ALL},
    {"remove-source", no_argument, NULL, OPT_REMOVE},
    {"dry-run", no_argument, NULL, OPT_DRY},
    {"jobs", required_argument, NULL, OPT_JOBS},
    {"json", no_argument, NULL, OPT_JSON},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"home-dir", required_argument, NULL, OPT_HOME},
    {"dir", required_argument, NULL, OPT_DIR},
    {"insecure", no_argument, NULL, OPT_INSECURE},
    {"docker-host", required_argument, NULL, OPT_DHOST},
    {"docker-config", required_argument, NULL, OPT_DCONFIG},
    {"sort", required_argument, NULL, OPT_SORT},
    {"reverse", no_argument, NULL, OPT_REVERSE},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

static int parse_long(const char *s, long min, long max, long *ret)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max)
		return -1;
	*ret = v;
	return 0;
}

static const char **projects_v; /* --project values; freed by main */

static int run(int argc, char *argv[])
{
	static char project_buf[NAME_PROJECT_MAX + 1], repo_buf[PATH_MAX];
	struct stagectl c = {.jobs = sync_default_jobs(), .timeout_s = -1};
	const char *cmd, *positional = NULL;
	const char **projects = calloc((size_t)argc + 1, sizeof(*projects));
	struct sf_err err = {0};
	long v;
	int opt, r;

	if (!projects)
		return STAGECTL_FAILED;
	projects_v = projects;
	c.projects = projects;
	if (argc < 2) {
		usage(stderr);
		return STAGECTL_USAGE;
	}
	cmd = argv[1];
	if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0) {
		printf("stagectl %s\n", PACKAGE_VERSION);
		return STAGECTL_OK;
	}
	if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
		usage(stdout);
		return STAGECTL_OK;
	}
	optind = 2;
	while ((opt = getopt_long(argc, argv, "", long_opts, NULL)) != -1) {
		switch (opt) {
		case OPT_FROM:
			c.from = optarg;
			break;
		case OPT_TO:
			c.to = optarg;
			break;
		case OPT_PROJECT:
			if (!name_project_valid(optarg)) {
				fprintf(stderr, "stagectl: --project %s: not a werf project name\n",
					optarg);
				return STAGECTL_USAGE;
			}
			projects[c.n_projects++] = optarg;
			c.projects_given = true;
			break;
		case OPT_ALL:
			c.all_projects = true;
			break;
		case OPT_REMOVE:
			c.remove_source = true;
			break;
		case OPT_DRY:
			c.dry_run = true;
			break;
		case OPT_JOBS:
			if (parse_long(optarg, 1, 256, &v) < 0) {
				fprintf(stderr, "stagectl: --jobs %s: expected 1..256\n", optarg);
				return STAGECTL_USAGE;
			}
			c.jobs = (int)v;
			break;
		case OPT_JSON:
			c.json = true;
			break;
		case OPT_TIMEOUT:
			if (parse_long(optarg, 0, 1000000000, &v) < 0) {
				fprintf(stderr, "stagectl: --timeout %s: expected seconds\n",
					optarg);
				return STAGECTL_USAGE;
			}
			c.timeout_s = v;
			break;
		case OPT_HOME:
			c.home_opt = optarg;
			break;
		case OPT_DIR:
			c.dir = optarg;
			break;
		case OPT_INSECURE:
			c.insecure = true;
			break;
		case OPT_DHOST:
			c.docker_host = optarg;
			break;
		case OPT_DCONFIG:
			c.docker_config = optarg;
			break;
		case OPT_SORT:
			if (strcmp(optarg, "name") && strcmp(optarg, "time") &&
			    strcmp(optarg, "size")) {
				fprintf(stderr, "stagectl: --sort %s: name, time or size\n",
					optarg);
				return STAGECTL_USAGE;
			}
			c.sort = optarg;
			break;
		case OPT_REVERSE:
			c.reverse = true;
			break;
		case OPT_HELP:
			usage(stdout);
			return STAGECTL_OK;
		default:
			return STAGECTL_USAGE;
		}
	}
	if (optind < argc)
		positional = argv[optind++];
	if (optind < argc) {
		fprintf(stderr, "stagectl: unexpected argument %s\n", argv[optind]);
		return STAGECTL_USAGE;
	}
	if (positional && strcmp(cmd, "ls") != 0) {
		fprintf(stderr, "stagectl %s: unexpected argument %s\n", cmd, positional);
		return STAGECTL_USAGE;
	}
	r = werf_home(c.home_opt, c.home, sizeof(c.home), &err);
	if (r < 0) {
		fprintf(stderr, "stagectl: werf's home: %s\n", err_msg(&err, r));
		return STAGECTL_FAILED;
	}
	bool is_sync = strcmp(cmd, "sync") == 0, is_switch = strcmp(cmd, "switch-from-local") == 0,
	     is_rollback = strcmp(cmd, "rollback") == 0, is_ls = strcmp(cmd, "ls") == 0,
	     is_verify = strcmp(cmd, "verify") == 0;
	if (!is_sync && !is_switch && !is_rollback && !is_ls && !is_verify) {
		fprintf(stderr, "stagectl: unknown command %s (see stagectl --help)\n", cmd);
		return STAGECTL_USAGE;
	}
	if (is_switch && !c.to)
		c.to = default_repo(repo_buf, sizeof(repo_buf));
	if (is_sync && !c.to)
		c.to = default_repo(repo_buf, sizeof(repo_buf));
	if (is_rollback && !c.from)
		c.from = default_repo(repo_buf, sizeof(repo_buf));
	if ((is_sync || is_verify || is_rollback) && !c.from) {
		fprintf(stderr, "stagectl %s: --from is required\n", cmd);
		return STAGECTL_USAGE;
	}
	if ((is_sync || is_verify || is_switch) && !c.to) {
		fprintf(stderr,
			"stagectl %s: --to is required (or $WERF_STAGES_STORAGE naming a "
			"repository, or $CI_REGISTRY_IMAGE)\n",
			cmd);
		return STAGECTL_USAGE;
	}
	if (is_ls && !positional) {
		fprintf(stderr, "stagectl ls: STORAGE is required\n");
		return STAGECTL_USAGE;
	}
	if ((c.from && check_storage("--from", c.from) < 0) ||
	    (c.to && check_storage("--to", c.to) < 0) ||
	    (positional && check_storage("storage", positional) < 0))
		return STAGECTL_USAGE;
	if ((is_switch && stagectl_is_local(c.to)) || (is_rollback && stagectl_is_local(c.from))) {
		fprintf(stderr, "stagectl %s: the repository must not be :local\n", cmd);
		return STAGECTL_USAGE;
	}
	if ((is_sync || is_verify) && strcmp(c.from, c.to) == 0) {
		fprintf(stderr, "stagectl %s: --from and --to are the same storage\n", cmd);
		return STAGECTL_USAGE;
	}
	if (c.all_projects && !(is_sync && stagectl_is_local(c.from))) {
		fprintf(stderr, "stagectl: --all-projects needs sync --from :local\n");
		return STAGECTL_USAGE;
	}
	if (c.all_projects && c.projects_given) {
		fprintf(stderr, "stagectl: --all-projects and --project exclude each other\n");
		return STAGECTL_USAGE;
	}
	if ((is_switch || is_rollback) && c.n_projects > 1) {
		fprintf(stderr, "stagectl %s: one project at a time (see the loop in the README)\n",
			cmd);
		return STAGECTL_USAGE;
	}
	/* The project from werf.yaml, except where the command lists projects without one. */
	bool wants_default =
	    !c.projects_given && !c.all_projects && !(is_ls && stagectl_is_local(positional));
	if (wants_default) {
		r = defaults_project(c.dir, project_buf, sizeof(project_buf));
		if (r < 0) {
			fprintf(
			    stderr,
			    "stagectl %s: no project: give --project P, or run it where werf.yaml "
			    "is (or --dir DIR)%s\n",
			    cmd, r == -EINVAL ? " (werf.yaml's project: is not a valid name)" : "");
			return STAGECTL_USAGE;
		}
		projects[c.n_projects++] = project_buf;
	}

	interrupt_install();
	if (is_sync)
		r = sync_command(&c);
	else if (is_switch)
		r = switch_from_local(&c);
	else if (is_rollback)
		r = switch_rollback(&c);
	else if (is_ls)
		r = inspect_ls(&c, positional);
	else
		r = inspect_verify(&c);
	if (interrupt_requested() && r == STAGECTL_OK)
		r = STAGECTL_FAILED;
	return r;
}

int main(int argc, char *argv[])
{
	int r = run(argc, argv);

	free(projects_v);
	/* Every way out unmounts what was mounted. */
	if (mounts_stop_all() < 0 && r == STAGECTL_OK)
		r = STAGECTL_FAILED;
	fflush(stdout);
	return r;
}
