/* mounts: stagefs children on private mount points, always unmounted. */
#include "mounts.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "interrupt.h"

struct mounts_mount {
	char *storage;
	char path[PATH_MAX];
	char log[PATH_MAX];
	pid_t pid;
	bool reaped;
	int status;
	struct mounts_mount *next;
};

static char priv[PATH_MAX]; /* the private directory, "" until made */
static struct mounts_mount *all;
static int counter;

static long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

static int make_priv(struct sf_err *err)
{
	const char *tmp = getenv("TMPDIR");
	char tmpl[PATH_MAX];

	if (priv[0])
		return 0;
	if (!tmp || !*tmp)
		tmp = "/tmp";
	if (snprintf(tmpl, sizeof(tmpl), "%s/stagectl.XXXXXX", tmp) >= (int)sizeof(tmpl))
		return err_set(err, -ENAMETOOLONG, "TMPDIR %s: path too long", tmp);
	if (!mkdtemp(tmpl))
		return err_set(err, -errno, "mkdtemp %s: %s", tmpl, strerror(errno));
	if (!realpath(tmpl, priv)) {
		int e = errno;
		rmdir(tmpl);
		return err_set(err, -e, "realpath %s: %s", tmpl, strerror(e));
	}
	return 0;
}

const char *mounts_private_dir(const char *name)
{
	static char dirs[4][PATH_MAX];
	static int n_dirs;
	char p[PATH_MAX];

	if (make_priv(NULL) < 0)
		return NULL;
	if (snprintf(p, sizeof(p), "%s/%s", priv, name) >= (int)sizeof(p))
		return NULL;
	for (int i = 0; i < n_dirs; i++)
		if (strcmp(dirs[i], p) == 0)
			return dirs[i];
	if (n_dirs == 4 || (mkdir(p, 0700) < 0 && errno != EEXIST))
		return NULL;
	memcpy(dirs[n_dirs], p, sizeof(p));
	return dirs[n_dirs++];
}

/* A mountinfo field with its octal escapes (\040 for a space) undone, in place. */
static void unescape(char *s)
{
	char *w = s;
	for (char *r = s; *r;) {
		if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' &&
		    r[3] >= '0' && r[3] <= '7') {
			*w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
			r += 4;
		} else {
			*w++ = *r++;
		}
	}
	*w = '\0';
}

static bool is_mounted(const char *path)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char *line = NULL;
	size_t cap = 0;
	bool found = false;

	if (!f)
		return false;
	while (!found && getline(&line, &cap, f) > 0) {
		/* ID PARENT MAJ:MIN ROOT MOUNTPOINT ...: the fifth field */
		char *p = line, *end;
		for (int i = 0; i < 4 && p; i++) {
			p = strchr(p, ' ');
			if (p)
				p++;
		}
		if (!p || !(end = strchr(p, ' ')))
			continue;
		*end = '\0';
		unescape(p);
		found = strcmp(p, path) == 0;
	}
	free(line);
	fclose(f);
	return found;
}

int mounts_active(void)
{
	int n = 0;
	for (struct mounts_mount *m = all; m; m = m->next)
		n += is_mounted(m->path);
	return n;
}

/* Append "-o" NAME=VALUE with fuse_opt's escapes for ',' and '\'. */
static char *opt_value(const char *name, const char *value)
{
	size_t n = strlen(name) + 2 * strlen(value) + 2;
	char *s = malloc(n), *w;

	if (!s)
		return NULL;
	w = s + snprintf(s, n, "%s=", name);
	for (const char *r = value; *r; r++) {
		if (*r == ',' || *r == '\\')
			*w++ = '\\';
		*w++ = *r;
	}
	*w = '\0';
	return s;
}

static const char *stagefs_binary(char *buf, size_t n)
{
	const char *env = getenv("STAGEFS");
	char self[PATH_MAX];
	ssize_t len;

	if (env && *env)
		return env;
	len = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (len > 0) {
		self[len] = '\0';
		char *slash = strrchr(self, '/');
		if (slash) {
			*slash = '\0';
			static const char *const rel[] = {"stagefs", "../fs/stagefs"};
			for (size_t i = 0; i < sizeof(rel) / sizeof(rel[0]); i++) {
				if (snprintf(buf, n, "%s/%s", self, rel[i]) < (int)n &&
				    access(buf, X_OK) == 0)
					return buf;
			}
		}
	}
	return "stagefs";
}

static void reap(struct mounts_mount *m, bool block)
{
	int st;
	if (m->reaped || m->pid <= 0)
		return;
	pid_t r = waitpid(m->pid, &st, block ? 0 : WNOHANG);
	if (r == m->pid) {
		m->reaped = true;
		m->status = st;
	} else if (r < 0 && errno == ECHILD) {
		m->reaped = true;
		m->status = 0;
	}
}

void mounts_log_tail(const struct mounts_mount *m, int lines, FILE *f)
{
	char buf[4096];
	int fd = open(m->log, O_RDONLY | O_CLOEXEC);
	off_t size;
	ssize_t n;

	if (fd < 0)
		return;
	size = lseek(fd, 0, SEEK_END);
	if (size > (off_t)sizeof(buf) - 1)
		lseek(fd, size - (off_t)sizeof(buf) + 1, SEEK_SET);
	else
		lseek(fd, 0, SEEK_SET);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = '\0';
	char *start = buf + n;
	int seen = 0;
	if (start > buf && start[-1] == '\n')
		start--;
	while (start > buf && seen < lines) {
		start--;
		if (*start == '\n')
			seen++;
	}
	if (*start == '\n')
		start++;
	while (*start) {
		char *nl = strchr(start, '\n');
		if (nl)
			*nl = '\0';
		if (*start)
			fprintf(f, "  stagefs: %s\n", start);
		if (!nl)
			break;
		start = nl + 1;
	}
}

static int run_fusermount(const char *flag, const char *path)
{
	pid_t pid = fork();
	int st;

	if (pid < 0)
		return -errno;
	if (pid == 0) {
		int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
		if (fd >= 0) {
			dup2(fd, 0);
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execlp("fusermount3", "fusermount3", flag, path, (char *)NULL);
		_exit(127);
	}
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -errno;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -EBUSY;
}

int mounts_start(const char *storage, const struct mounts_opts *o, struct mounts_mount **ret,
		 struct sf_err *err)
{
	struct mounts_mount *m;
	char bin_buf[PATH_MAX], cache[PATH_MAX];
	const char *bin;
	char *argv[24] = {0};
	char *owned[8] = {0};
	int argc = 0, n_owned = 0, r;
	long timeout_ms = 30000, start;
	const char *t = getenv("STAGECTL_MOUNT_TIMEOUT");

	if (t && *t)
		timeout_ms = strtol(t, NULL, 10) * 1000;
	if ((r = make_priv(err)) < 0)
		return r;
	m = calloc(1, sizeof(*m));
	if (!m || !(m->storage = strdup(storage))) {
		free(m);
		return err_set(err, -ENOMEM, "out of memory");
	}
	counter++;
	if (snprintf(m->path, sizeof(m->path), "%s/m%d", priv, counter) >= (int)sizeof(m->path) ||
	    snprintf(m->log, sizeof(m->log), "%s/stagefs-%d.log", priv, counter) >=
		(int)sizeof(m->log) ||
	    snprintf(cache, sizeof(cache), "%s/cache-%d", priv, counter) >= (int)sizeof(cache)) {
		errno = ENAMETOOLONG;
		r = err_set(err, -errno, "%s: path too long", priv);
		free(m->storage);
		free(m);
		return r;
	}
	if (mkdir(m->path, 0700) < 0 || mkdir(cache, 0700) < 0) {
		r = err_set(err, -errno, "mkdir %s: %s", m->path, strerror(errno));
		free(m->storage);
		free(m);
		return r;
	}
	bin = stagefs_binary(bin_buf, sizeof(bin_buf));
	argv[argc++] = (char *)bin;
	argv[argc++] = "-f";
	argv[argc++] = "-o";
	argv[argc++] = owned[n_owned++] = opt_value("cache_dir", cache);
	if (o->werf_home) {
		argv[argc++] = "-o";
		argv[argc++] = owned[n_owned++] = opt_value("werf_home", o->werf_home);
	}
	if (o->docker_host) {
		argv[argc++] = "-o";
		argv[argc++] = owned[n_owned++] = opt_value("docker_host", o->docker_host);
	}
	if (o->docker_config) {
		argv[argc++] = "-o";
		argv[argc++] = owned[n_owned++] = opt_value("docker_config", o->docker_config);
	}
	if (o->insecure) {
		argv[argc++] = "-o";
		argv[argc++] = "insecure";
	}
	if (o->read_only) {
		argv[argc++] = "-o";
		argv[argc++] = "ro";
	}
	argv[argc++] = m->storage;
	argv[argc++] = m->path;
	for (int i = 0; i < n_owned; i++)
		if (!owned[i]) {
			r = err_set(err, -ENOMEM, "out of memory");
			goto fail;
		}

	pid_t parent = getpid();
	m->pid = fork();
	if (m->pid < 0) {
		r = err_set(err, -errno, "fork: %s", strerror(errno));
		goto fail;
	}
	if (m->pid == 0) {
		setpgid(0, 0);
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != parent)
			_exit(1);
		int in = open("/dev/null", O_RDONLY | O_CLOEXEC);
		int out = open(m->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
		if (in < 0 || out < 0)
			_exit(126);
		dup2(in, 0);
		dup2(out, 1);
		dup2(out, 2);
		signal(SIGPIPE, SIG_DFL);
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		execvp(bin, argv);
		dprintf(2, "exec %s: %s\n", bin, strerror(errno));
		_exit(127);
	}
	m->next = all;
	all = m;
	for (int i = 0; i < n_owned; i++)
		free(owned[i]);

	start = now_ms();
	for (;;) {
		if (is_mounted(m->path)) {
			*ret = m;
			return 0;
		}
		reap(m, false);
		if (m->reaped) {
			fprintf(stderr, "stagectl: stagefs %s exited before mounting; its log:\n",
				storage);
			mounts_log_tail(m, 8, stderr);
			return err_set(err, -ECHILD,
				       "could not mount %s (stagefs exited with status %d)",
				       storage,
				       WIFEXITED(m->status) ? WEXITSTATUS(m->status)
							    : 128 + WTERMSIG(m->status));
		}
		if (interrupt_requested())
			return err_set(err, -ECANCELED, "interrupted while mounting %s", storage);
		if (now_ms() - start > timeout_ms) {
			mounts_log_tail(m, 8, stderr);
			return err_set(err, -ETIMEDOUT, "%s: not mounted within %ld s", storage,
				       timeout_ms / 1000);
		}
		sleep_ms(20);
	}
fail:
	for (int i = 0; i < n_owned; i++)
		free(owned[i]);
	free(m->storage);
	free(m);
	return r;
}

const char *mounts_path(const struct mounts_mount *m)
{
	return m->path;
}

static int stop_one(struct mounts_mount *m)
{
	long start = now_ms();
	int r = 0;

	while (is_mounted(m->path)) {
		if (run_fusermount("-u", m->path) == 0)
			break;
		if (now_ms() - start > 10000) {
			fprintf(stderr, "stagectl: %s is busy; detaching it (fusermount3 -uz)\n",
				m->path);
			if (run_fusermount("-uz", m->path) < 0 && is_mounted(m->path)) {
				fprintf(stderr, "stagectl: could not unmount %s\n", m->path);
				r = -EBUSY;
			}
			break;
		}
		sleep_ms(100);
	}
	start = now_ms();
	for (int sent = 0; !m->reaped;) {
		reap(m, false);
		if (m->reaped)
			break;
		long waited = now_ms() - start;
		if (sent == 0 && waited > 30000) {
			kill(m->pid, SIGTERM);
			sent = 1;
		} else if (sent == 1 && waited > 35000) {
			kill(m->pid, SIGKILL);
			sent = 2;
		}
		sleep_ms(10);
	}
	if (!WIFEXITED(m->status) || WEXITSTATUS(m->status) != 0) {
		fprintf(stderr, "stagectl: stagefs %s exited with status %d; its log:\n",
			m->storage,
			WIFEXITED(m->status) ? WEXITSTATUS(m->status) : 128 + WTERMSIG(m->status));
		mounts_log_tail(m, 8, stderr);
	}
	if (r == 0)
		rmdir(m->path);
	return r;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)ftw;
	if (flag == FTW_DP)
		rmdir(path);
	else
		unlink(path);
	return 0;
}

int mounts_stop_all(void)
{
	int r = 0;

	while (all) {
		struct mounts_mount *m = all;
		if (stop_one(m) < 0)
			r = -EBUSY;
		all = m->next;
		free(m->storage);
		free(m);
	}
	if (priv[0] && r == 0) {
		/* FTW_MOUNT: never descend into a mount that is somehow still there */
		nftw(priv, rm_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
		priv[0] = '\0';
	}
	return r;
}
