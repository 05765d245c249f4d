/*
 * The floor for one locked atomic write: the system calls a locked, atomic, durable JSON
 * write cannot avoid, issued back-to-back from compiled code with a ready buffer.
 *
 *   open lock file, flock(LOCK_EX), create temp (O_EXCL), write, fsync, close, rename,
 *   open directory, fsync directory, close, flock(LOCK_UN), close lock file
 *
 * (non-durable: the same without the two fsyncs and the directory open/close).
 *
 * Usage: floor TARGET SIZE ITERATIONS [DURABLE(1|0)] [--all]
 *   Writes SIZE bytes to TARGET ITERATIONS times; the lock file is TARGET with its suffix
 *   replaced by ".lock" (pathlib's with_suffix, as atomicjson and the legacy helper do).
 *   Prints "median_ns N" or, with --all, one duration in nanoseconds per line.
 *
 * Built by benches/quick.py with `cc -O2`; standalone: cc -O2 -o floor benches/floor.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *what, const char *arg) {
    fprintf(stderr, "floor: %s %s: %s\n", what, arg ? arg : "", strerror(errno));
    exit(1);
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: floor TARGET SIZE ITERATIONS [DURABLE(1|0)] [--all]\n");
        return 2;
    }
    const char *target = argv[1];
    size_t size = (size_t)strtoull(argv[2], NULL, 10);
    long iterations = strtol(argv[3], NULL, 10);
    int durable = argc > 4 ? atoi(argv[4]) != 0 : 1;
    int all = argc > 5 && strcmp(argv[5], "--all") == 0;
    if (iterations < 1) iterations = 1;

    /* directory and base name of the target */
    char dir[4096], base[1024], lockpath[4096], tmppath[4096];
    const char *slash = strrchr(target, '/');
    if (slash) {
        size_t n = (size_t)(slash - target);
        if (n == 0) n = 1;
        if (n >= sizeof dir) return 2;
        memcpy(dir, target, n);
        dir[n] = 0;
        snprintf(base, sizeof base, "%s", slash + 1);
    } else {
        strcpy(dir, ".");
        snprintf(base, sizeof base, "%s", target);
    }
    /* with_suffix('.lock'): replace the last suffix of the base name (not a leading dot) */
    char stem[1024];
    snprintf(stem, sizeof stem, "%s", base);
    char *dot = strrchr(stem, '.');
    if (dot && dot != stem) *dot = 0;
    if (slash)
        snprintf(lockpath, sizeof lockpath, "%s/%s.lock", dir, stem);
    else
        snprintf(lockpath, sizeof lockpath, "%s.lock", stem);

    /* the ready buffer: JSON-looking text */
    char *buf = malloc(size ? size : 1);
    if (!buf) die("malloc", NULL);
    static const char pattern[] = "  \"feature_00042\": 0.012345678901234567,\n";
    for (size_t i = 0; i < size; i++) buf[i] = pattern[i % (sizeof pattern - 1)];

    uint64_t *samples = malloc(sizeof(uint64_t) * (size_t)iterations);
    if (!samples) die("malloc", NULL);
    pid_t pid = getpid();

    for (long it = 0; it < iterations; it++) {
        uint64_t t0 = now_ns();
        int lfd = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
        if (lfd < 0) die("open", lockpath);
        if (flock(lfd, LOCK_EX) != 0) die("flock", lockpath);
        snprintf(tmppath, sizeof tmppath, "%s/.%s.%d%ld.tmp", dir, base, (int)pid, it);
        int fd = open(tmppath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0) die("open", tmppath);
        size_t off = 0;
        while (off < size) {
            ssize_t w = write(fd, buf + off, size - off);
            if (w < 0) {
                if (errno == EINTR) continue;
                die("write", tmppath);
            }
            off += (size_t)w;
        }
        if (durable && fsync(fd) != 0) die("fsync", tmppath);
        if (close(fd) != 0) die("close", tmppath);
        if (rename(tmppath, target) != 0) die("rename", target);
        if (durable) {
            int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (dfd < 0) die("open", dir);
            if (fsync(dfd) != 0) die("fsync", dir);
            close(dfd);
        }
        flock(lfd, LOCK_UN);
        close(lfd);
        samples[it] = now_ns() - t0;
    }

    if (all) {
        for (long i = 0; i < iterations; i++) printf("%llu\n", (unsigned long long)samples[i]);
    } else {
        qsort(samples, (size_t)iterations, sizeof(uint64_t), cmp_u64);
        printf("median_ns %llu\n", (unsigned long long)samples[iterations / 2]);
    }
    free(samples);
    free(buf);
    return 0;
}
