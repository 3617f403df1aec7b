/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_git.c - the git source without a network: URL parsing, the
 * known_hosts check (plain, hashed, [host]:port, changed, revoked), the
 * blob map (reload, torn tail), and whole syncs against file:// remotes
 * made with the git command line (modes, links, mtimes, pins, sub-paths),
 * the repack, and the sweep of what a killed fetch leaves behind.
 */
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "git_i.h"
#include "harness.h"

static char dir[] = "/tmp/dagfs-test-git-XXXXXX";

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
	char cmd[4096];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	return system(cmd);
}

/* A fresh work tree @dir/w with a bare remote @dir/r.git. */
static int repo_fresh(void)
{
	return sh("cd %s && rm -rf w r.git cache && mkdir cache && "
		  "git init -q -b main w && git init -q --bare -b main r.git && "
		  "cd w && git config user.email t@t && git config user.name t "
		  "&& git remote add origin ../r.git",
		  dir);
}

/* Commit everything in the work tree at @when (seconds) and push. */
static int commit_push(long when, const char *msg)
{
	return sh("cd %s/w && git add -A && GIT_COMMITTER_DATE='%ld +0000' "
		  "GIT_AUTHOR_DATE='%ld +0000' git commit -q -m '%s' && "
		  "git push -q -f origin HEAD:main 2>/dev/null",
		  dir, when, when, msg);
}

static int write_file(const char *rel, const char *text, mode_t mode)
{
	char path[4096];
	int fd;

	snprintf(path, sizeof(path), "%s/w/%s", dir, rel);
	for (char *p = strchr(path + strlen(dir) + 3, '/'); p;
	     p = strchr(p + 1, '/')) {
		*p = '\0';
		mkdir(path, 0755);
		*p = '/';
	}
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
	if (fd < 0)
		return -1;
	if (write(fd, text, strlen(text)) != (ssize_t)strlen(text)) {
		close(fd);
		return -1;
	}
	chmod(path, mode);
	return close(fd);
}

static char *head_of(const char *what)
{
	static char hex[64];
	char cmd[512];
	FILE *p;

	snprintf(cmd, sizeof(cmd), "git -C %s/w rev-parse %s", dir, what);
	p = popen(cmd, "r");
	if (!p || !fgets(hex, sizeof(hex), p))
		hex[0] = '\0';
	if (p)
		pclose(p);
	hex[strcspn(hex, "\n")] = '\0';
	return hex;
}

struct rig {
	struct store *st;
	struct source *src;
};

static int rig_open(struct rig *r, const char *extra)
{
	struct source_spec *spec;
	char text[4096], err[512], cache[4096];
	int rc;

	snprintf(cache, sizeof(cache), "%s/cache", dir);
	snprintf(text, sizeof(text), "git:file://%s/r.git,name=t%s", dir,
		 extra);
	memset(r, 0, sizeof(*r));
	if (store_open(&r->st, cache, false))
		return -1;
	if (source_spec_parse(&spec, text, err, sizeof(err)))
		return -1;
	rc = source_new(&r->src, spec, r->st, err, sizeof(err));
	source_spec_free(spec);
	if (rc)
		fprintf(stderr, "source_new: %s\n", err);
	return rc;
}

static void rig_close(struct rig *r)
{
	source_free(r->src);
	store_close(r->st);
}

/* One sync; on a new snapshot it becomes the source's current one. */
static int rig_sync(struct rig *r, struct snap **out)
{
	struct snap *s = NULL, *cur = source_current(r->src);
	char err[512] = "";
	int rc = r->src->ops->sync(r->src, cur ? cur->rev : NULL, &s, err,
				   sizeof(err));

	snap_unref(cur);
	if (rc < 0)
		fprintf(stderr, "sync: %s\n", err);
	if (rc == 1) {
		snap_unref(r->src->current);
		r->src->current = snap_ref(s);
	}
	*out = s;
	return rc;
}

static const struct snap_entry *entry(const struct snap *s, const char *p)
{
	int i = s ? snap_lookup(s, p) : -1;

	return i < 0 ? NULL : &s->e[i];
}

static bool content_is(struct store *st, const struct snap_entry *e,
		       const char *text)
{
	char buf[256];
	int fd = store_open_blob(st, &e->hash);
	ssize_t n;

	if (fd < 0)
		return false;
	n = read(fd, buf, sizeof(buf));
	close(fd);
	return n == (ssize_t)strlen(text) && !memcmp(buf, text, (size_t)n);
}

/* ------------------------------------------------------------ cases */

static void test_git__url_parse(void)
{
	struct gitsrc_url u;

	CHECK(!gitsrc_url_parse(&u, "ssh://root@127.0.0.1:2222/srv/r.git"));
	CHECK(u.ssh && !strcmp(u.host, "127.0.0.1") && u.port == 2222 &&
	      !strcmp(u.user, "root"));
	CHECK(!gitsrc_url_parse(&u, "git@github.com:org/dags.git"));
	CHECK(u.ssh && !strcmp(u.host, "github.com") && u.port == 22 &&
	      !strcmp(u.user, "git"));
	CHECK(!gitsrc_url_parse(&u, "ssh://[::1]:22/x"));
	CHECK(u.ssh && !strcmp(u.host, "::1"));
	CHECK(!gitsrc_url_parse(&u, "https://github.com/org/dags.git"));
	CHECK(!u.ssh);
	CHECK(!gitsrc_url_parse(&u, "/srv/git/dags.git"));
	CHECK(!u.ssh);
	CHECK(gitsrc_url_parse(&u, "ssh://h:99999/x") == -EINVAL);
}

/* A wire-format key blob "ssh-ed25519" + 32 bytes of @fill, base64. */
static void fake_key(unsigned char *blob, char *b64, unsigned char fill)
{
	memcpy(blob, "\0\0\0\x0bssh-ed25519\0\0\0\x20", 19);
	memset(blob + 19, fill, 32);
	EVP_EncodeBlock((unsigned char *)b64, blob, 51);
}

static void hashed_name(char *out, const char *name)
{
	unsigned char salt[20], mac[20];
	char s64[64], h64[64];
	unsigned int len = 0;

	memset(salt, 7, sizeof(salt));
	HMAC(EVP_sha1(), salt, 20, (const unsigned char *)name, strlen(name),
	     mac, &len);
	EVP_EncodeBlock((unsigned char *)s64, salt, 20);
	EVP_EncodeBlock((unsigned char *)h64, mac, 20);
	sprintf(out, "|1|%s|%s", s64, h64);
}

static void test_git__known_hosts(void)
{
	unsigned char k1[64], k2[64];
	char b1[128], b2[128], kh[4096], why[256], hn[200];
	FILE *f;

	fake_key(k1, b1, 1);
	fake_key(k2, b2, 2);
	hashed_name(hn, "[10.0.0.9]:2200");
	snprintf(kh, sizeof(kh), "%s/known_hosts", dir);
	f = fopen(kh, "w");
	CHECK(f);
	fprintf(f,
		"# comment\n\ngithub.com,140.82.1.1 ssh-ed25519 %s\n"
		"[127.0.0.1]:2222 ssh-ed25519 %s c\n%s ssh-ed25519 %s\n"
		"@revoked bad.example ssh-ed25519 %s\n*.wild ssh-ed25519 "
		"%s\n",
		b1, b1, hn, b2, b1, b2);
	fclose(f);
	CHECK(!gitsrc_known_hosts_check(kh, "github.com", 22, k1, 51, why,
					sizeof(why)));
	CHECK(!gitsrc_known_hosts_check(kh, "140.82.1.1", 22, k1, 51, why,
					sizeof(why)));
	CHECK(!gitsrc_known_hosts_check(kh, "127.0.0.1", 2222, k1, 51, why,
					sizeof(why)));
	CHECK(!gitsrc_known_hosts_check(kh, "10.0.0.9", 2200, k2, 51, why,
					sizeof(why)));
	CHECK(!gitsrc_known_hosts_check(kh, "a.wild", 22, k2, 51, why,
					sizeof(why)));
	/* the port matters: 127.0.0.1 on 22 is not listed */
	CHECK(gitsrc_known_hosts_check(kh, "127.0.0.1", 22, k1, 51, why,
				       sizeof(why)) == -ENOENT);
	CHECK(strstr(why, "host key for 127.0.0.1 not in known_hosts"));
	CHECK(gitsrc_known_hosts_check(kh, "github.com", 22, k2, 51, why,
				       sizeof(why)) == -EKEYREJECTED);
	CHECK(strstr(why, "does not match"));
	CHECK(gitsrc_known_hosts_check(kh, "bad.example", 22, k1, 51, why,
				       sizeof(why)) == -EKEYREJECTED);
	CHECK(strstr(why, "revoked"));
	CHECK(gitsrc_known_hosts_check("/nonexistent/kh", "x", 22, k1, 51, why,
				       sizeof(why)) == -ENOENT);
}

static void test_git__blobmap_reload_and_torn_tail(void)
{
	struct gitsrc_blobmap m;
	struct dhash h;
	git_oid oid;
	char path[4096];
	int fd;

	snprintf(path, sizeof(path), "%s/blobmap", dir);
	unlink(path);
	CHECK(!gitsrc_blobmap_open(&m, path));
	for (int i = 0; i < 3000; i++) {
		memset(&oid, 0, sizeof(oid));
		memcpy(oid.id, &i, sizeof(i));
		dhash_buf(&h, &i, sizeof(i));
		CHECK(!gitsrc_blobmap_add(&m, &oid, &h, (uint64_t)i));
	}
	gitsrc_blobmap_close(&m);
	fd = open(path, O_WRONLY | O_APPEND);
	CHECK(fd >= 0 && write(fd, "torn", 4) == 4);
	close(fd);
	CHECK(!gitsrc_blobmap_open(&m, path));
	CHECK(m.n == 3000);
	memset(&oid, 0, sizeof(oid));
	oid.id[0] = 77;
	CHECK(gitsrc_blobmap_get(&m, &oid) &&
	      gitsrc_blobmap_get(&m, &oid)->size == 77);
	gitsrc_blobmap_close(&m);
	CHECK(!gitsrc_blobmap_open(&m, path));
	CHECK(m.n == 3000);
	gitsrc_blobmap_close(&m);
}

static void test_git__sync_modes_links_and_stable_mtime(void)
{
	struct rig r;
	struct snap *s = NULL, *s2 = NULL;
	const struct snap_entry *e;

	CHECK(!repo_fresh());
	CHECK(!write_file("dags/a.py", "print(1)\n", 0644));
	CHECK(!write_file("bin/run.sh", "#!/bin/sh\n", 0755));
	CHECK(!write_file("b.py", "print(2)\n", 0644));
	CHECK(!sh("ln -s dags/a.py %s/w/link.py && ln -s ../../x %s/w/out", dir,
		  dir));
	CHECK(!commit_push(1000000000, "one"));
	CHECK(!rig_open(&r, ""));
	CHECK(rig_sync(&r, &s) == 1);
	CHECK(!strcmp(s->rev, head_of("HEAD")));
	CHECK((e = entry(s, "bin/run.sh")) && e->mode == 0755);
	CHECK((e = entry(s, "dags/a.py")) && e->mode == 0644 && e->size == 9);
	CHECK(content_is(r.st, e, "print(1)\n"));
	CHECK(e->mtime_ns == 1000000000LL * 1000000000);
	CHECK((e = entry(s, "link.py")) && e->type == SNAP_LINK &&
	      !strcmp(e->target, "dags/a.py"));
	CHECK(!entry(s, "out"));       /* escapes the root: left out */
	CHECK(rig_sync(&r, &s2) == 0); /* nothing moved */
	CHECK(!write_file("b.py", "print(3)\n", 0644));
	CHECK(!commit_push(1000000500, "two"));
	CHECK(rig_sync(&r, &s2) == 1);
	CHECK((e = entry(s2, "dags/a.py")) &&
	      e->mtime_ns == 1000000000LL * 1000000000);
	CHECK((e = entry(s2, "b.py")) &&
	      e->mtime_ns == 1000000500LL * 1000000000);
	CHECK(content_is(r.st, e, "print(3)\n"));
	snap_unref(s);
	snap_unref(s2);
	rig_close(&r);
}

/* The fetch reports libgit2's indexer figures as the sync's progress. */
static void test_git__progress_counts_the_fetch(void)
{
	struct source_status st;
	struct snap *s = NULL;
	struct rig r;
	char name[32];

	CHECK(!repo_fresh());
	for (int i = 0; i < 40; i++) {
		snprintf(name, sizeof(name), "dags/f%02d.py", i);
		CHECK(!write_file(name, name, 0644));
	}
	CHECK(!commit_push(1000000000, "forty"));
	CHECK(!rig_open(&r, ""));
	/* what the loop does around ->sync (source_loop.c attempt) */
	pthread_mutex_lock(&r.src->lock);
	r.src->st.progress = (struct source_progress){ .active = true };
	pthread_mutex_unlock(&r.src->lock);
	CHECK(rig_sync(&r, &s) == 1);
	source_get_status(r.src, &st);
	/* 40 blobs, 2 trees, 1 commit */
	CHECK(st.progress.objects_total >= 43);
	CHECK(st.progress.objects == st.progress.objects_total);
	CHECK(st.progress.bytes > 0 && st.progress.bytes_total == 0);
	snap_unref(s);
	rig_close(&r);
}

static void test_git__blob_map_spares_rehash_after_restart(void)
{
	struct rig r;
	struct snap *s = NULL;
	struct stat st;
	char path[4096];

	CHECK(!repo_fresh());
	CHECK(!write_file("a.py", "a\n", 0644));
	CHECK(!write_file("b.py", "b\n", 0644));
	CHECK(!commit_push(1000000000, "one"));
	CHECK(!rig_open(&r, ""));
	CHECK(rig_sync(&r, &s) == 1);
	snap_unref(s);
	rig_close(&r);
	snprintf(path, sizeof(path), "%s/cache/git/t/blobmap", dir);
	CHECK(!stat(path, &st) && st.st_size == 2 * 48);
	CHECK(!write_file("c.py", "c\n", 0644));
	CHECK(!commit_push(1000000100, "two"));
	CHECK(!rig_open(&r, ""));
	CHECK(rig_sync(&r, &s) == 1 && s->n == 4);
	CHECK(!stat(path, &st) && st.st_size == 3 * 48);
	snap_unref(s);
	rig_close(&r);
}

static void test_git__pins_tags_and_subpath(void)
{
	struct rig r;
	struct snap *s = NULL;
	char first[64], opt[200];

	CHECK(!repo_fresh());
	CHECK(!write_file("dags/a.py", "v1\n", 0644));
	CHECK(!write_file("other/x", "x\n", 0644));
	CHECK(!commit_push(1000000000, "one"));
	snprintf(first, sizeof(first), "%s", head_of("HEAD"));
	CHECK(!sh("cd %s/w && git tag -a v1 -m v1 && git push -q origin v1 "
		  "2>/dev/null",
		  dir));
	CHECK(!write_file("dags/a.py", "v2\n", 0644));
	CHECK(!commit_push(1000000100, "two"));

	CHECK(!rig_open(&r, ",ref=v1,subpath=/dags/"));
	CHECK(rig_sync(&r, &s) == 1);
	CHECK(!strcmp(s->rev, first) && entry(s, "a.py") && !entry(s, "x"));
	CHECK(content_is(r.st, entry(s, "a.py"), "v1\n"));
	snap_unref(s);
	rig_close(&r);

	snprintf(opt, sizeof(opt), ",ref=%s", first);
	CHECK(!rig_open(&r, opt));
	CHECK(rig_sync(&r, &s) == 1 && !strcmp(s->rev, first));
	CHECK(content_is(r.st, entry(s, "dags/a.py"), "v1\n"));
	snap_unref(s);
	/* pinned and present: no remote needed at all */
	CHECK(!sh("mv %s/r.git %s/gone.git", dir, dir));
	snap_unref(r.src->current);
	r.src->current = NULL;
	CHECK(rig_sync(&r, &s) == 1 && !strcmp(s->rev, first));
	snap_unref(s);
	rig_close(&r);
	CHECK(!sh("mv %s/gone.git %s/r.git", dir, dir));

	CHECK(!rig_open(&r, ",ref=main,subpath=nope"));
	CHECK(rig_sync(&r, &s) == -ENOENT);
	rig_close(&r);
	CHECK(!rig_open(&r, ",ref=no-such-branch"));
	CHECK(rig_sync(&r, &s) == -ENOENT);
	rig_close(&r);
}

static void test_git__submodules_off_and_recursive(void)
{
	struct rig r;
	struct snap *s = NULL;
	const struct snap_entry *e;

	CHECK(!repo_fresh());
	CHECK(!sh("cd %s && rm -rf sub.git subw && git init -q -b main subw && "
		  "cd subw && echo inner > inner.py && git add -A && "
		  "git -c user.email=t@t -c user.name=t commit -q -m s && "
		  "git clone -q --bare . ../sub.git",
		  dir));
	CHECK(!write_file("top.py", "top\n", 0644));
	CHECK(!sh("cd %s/w && git -c protocol.file.allow=always submodule add "
		  "-q file://%s/sub.git libs/sub >/dev/null 2>&1",
		  dir, dir));
	CHECK(!commit_push(1000000000, "with submodule"));

	CHECK(!rig_open(&r, ""));
	CHECK(rig_sync(&r, &s) == 1);
	CHECK((e = entry(s, "libs/sub")) && e->type == SNAP_DIR &&
	      e->child_count == 0);
	CHECK(entry(s, ".gitmodules") && entry(s, "top.py"));
	snap_unref(s);
	rig_close(&r);

	CHECK(!sh("rm -rf %s/cache/*", dir));
	CHECK(!rig_open(&r, ",submodules=recursive"));
	CHECK(rig_sync(&r, &s) == 1);
	CHECK((e = entry(s, "libs/sub/inner.py")) && e->type == SNAP_FILE);
	CHECK(content_is(r.st, e, "inner\n"));
	snap_unref(s);
	rig_close(&r);
}

static void test_git__dir_mtime_moves_only_with_its_content(void)
{
	struct rig r;
	struct snap *s = NULL, *s2 = NULL;
	const struct snap_entry *e;

	CHECK(!repo_fresh());
	CHECK(!write_file("a/x.py", "x\n", 0644));
	CHECK(!write_file("b/y.py", "y\n", 0644));
	CHECK(!commit_push(1000000000, "one"));
	CHECK(!rig_open(&r, ""));
	CHECK(rig_sync(&r, &s) == 1);
	CHECK(!write_file("b/y.py", "y2\n", 0644));
	CHECK(!commit_push(1000000900, "two"));
	CHECK(rig_sync(&r, &s2) == 1);
	CHECK((e = entry(s2, "a")) && e->mtime_ns == 1000000000LL * 1000000000);
	CHECK((e = entry(s2, "b")) && e->mtime_ns == 1000000900LL * 1000000000);
	snap_unref(s);
	snap_unref(s2);
	rig_close(&r);
}

static int count_packs(void)
{
	char cmd[4096];
	int n = -1;
	FILE *p;

	snprintf(cmd, sizeof(cmd),
		 "ls %s/cache/git/t/repo.git/objects/pack/"
		 " | grep -c '\\.pack$'",
		 dir);
	p = popen(cmd, "r");
	if (p && fscanf(p, "%d", &n) != 1)
		n = -1;
	if (p)
		pclose(p);
	return n;
}

static void test_git__repack_keeps_repository_whole(void)
{
	struct rig r;
	struct snap *s = NULL;
	char text[32];
	int most = 0;

	CHECK(!repo_fresh());
	CHECK(!write_file("keep.py", "kept\n", 0644));
	CHECK(!rig_open(&r, ""));
	for (int i = 0; i < 40; i++) {
		snprintf(text, sizeof(text), "%d\n", i);
		CHECK(!write_file("n.txt", text, 0644));
		CHECK(!commit_push(1000000000 + i, "next"));
		CHECK(rig_sync(&r, &s) == 1);
		CHECK(content_is(r.st, entry(s, "n.txt"), text));
		snap_unref(s);
		if (count_packs() > most)
			most = count_packs();
	}
	CHECK(most >= 40);
	CHECK(!gitsrc_pack_tidy(r.src->priv, 32));
	CHECK(count_packs() == 1);
	CHECK(rig_sync(&r, &s) == 0); /* the repository is whole */
	rig_close(&r);
	CHECK(!rig_open(&r, ""));
	CHECK(rig_sync(&r, &s) == 1 &&
	      content_is(r.st, entry(s, "keep.py"), "kept\n"));
	snap_unref(s);
	rig_close(&r);
}

/*
 * What a killed fetch leaves (a temporary pack, an index without its
 * pack, lock files, in the repository and a submodule's) goes at the
 * first sync; real packs and a ref that merely looks like a temporary
 * name stay, and the unlocked tip moves again.
 */
static void test_git__sweep_removes_leftovers_only(void)
{
	static const char *const gone[] = {
		"repo.git/objects/pack/pack_git2_1a2b3c",
		"repo.git/objects/pack/pack-"
		"0000000000000000000000000000000000000000.idx",
		"repo.git/objects/pack/pack-"
		"1111111111111111111111111111111111111111.idx.lock",
		"repo.git/refs/dagfs/tip.lock",
		"repo.git/packed-refs.lock",
		"modules/ab.git/objects/pack/pack_git2_4d5e6f",
		"modules/ab.git/refs/heads/main.lock",
	};
	struct rig r;
	struct snap *s = NULL;
	char *head;

	CHECK(!repo_fresh());
	CHECK(!write_file("a.py", "one\n", 0644));
	CHECK(!commit_push(1000000000, "one"));
	CHECK(!rig_open(&r, ""));
	CHECK(rig_sync(&r, &s) == 1);
	snap_unref(s);
	rig_close(&r);
	head = head_of("HEAD");
	for (size_t i = 0; i < sizeof(gone) / sizeof(*gone); i++)
		CHECK(!sh("cd %s/cache/git/t && mkdir -p $(dirname %s) && "
			  "echo x > %s",
			  dir, gone[i], gone[i]));
	CHECK(!sh("cd %s/cache/git/t/repo.git && mkdir -p refs/dagfs/heads && "
		  "echo %s > refs/dagfs/heads/pack_git2_branch",
		  dir, head));
	CHECK(!write_file("a.py", "two\n", 0644));
	CHECK(!commit_push(1000000100, "two"));
	CHECK(!rig_open(&r, ""));
	CHECK(rig_sync(&r, &s) == 1 &&
	      content_is(r.st, entry(s, "a.py"), "two\n"));
	snap_unref(s);
	rig_close(&r);
	for (size_t i = 0; i < sizeof(gone) / sizeof(*gone); i++)
		CHECK(sh("test -e %s/cache/git/t/%s", dir, gone[i]) != 0);
	CHECK(!sh("test -f %s/cache/git/t/repo.git/refs/dagfs/heads/"
		  "pack_git2_branch",
		  dir));
	CHECK(count_packs() == 2);
	CHECK(!sh("git -C %s/cache/git/t/repo.git fsck --no-dangling "
		  "--no-progress",
		  dir));
}

static void test_git__bad_options(void)
{
	struct rig r;

	CHECK(!repo_fresh());
	CHECK(rig_open(&r, ",submodules=maybe") == -EINVAL);
	store_close(r.st);
	CHECK(rig_open(&r, ",ssh-key=/nonexistent") == -ENOENT);
	store_close(r.st);
	CHECK(rig_open(&r, ",bogus=1") == -EINVAL);
	store_close(r.st);
}

static const struct harness_case cases[] = {
	{ "test_git__url_parse", test_git__url_parse },
	{ "test_git__known_hosts", test_git__known_hosts },
	{ "test_git__blobmap_reload_and_torn_tail",
	  test_git__blobmap_reload_and_torn_tail },
	{ "test_git__sync_modes_links_and_stable_mtime",
	  test_git__sync_modes_links_and_stable_mtime },
	{ "test_git__progress_counts_the_fetch",
	  test_git__progress_counts_the_fetch },
	{ "test_git__blob_map_spares_rehash_after_restart",
	  test_git__blob_map_spares_rehash_after_restart },
	{ "test_git__pins_tags_and_subpath", test_git__pins_tags_and_subpath },
	{ "test_git__submodules_off_and_recursive",
	  test_git__submodules_off_and_recursive },
	{ "test_git__dir_mtime_moves_only_with_its_content",
	  test_git__dir_mtime_moves_only_with_its_content },
	{ "test_git__repack_keeps_repository_whole",
	  test_git__repack_keeps_repository_whole },
	{ "test_git__sweep_removes_leftovers_only",
	  test_git__sweep_removes_leftovers_only },
	{ "test_git__bad_options", test_git__bad_options },
	{ NULL, NULL },
};

int main(void)
{
	int rc;

	if (!mkdtemp(dir))
		return 1;
	log_setup(LOG_LVL_ERR, false);
	rc = harness_run(cases);
	sh("rm -rf %s", dir);
	return rc;
}
