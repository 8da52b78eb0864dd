/*
 * One watcher process of bench scenario (g), in C so that receiving costs the machine little
 * next to the servers' sending: holds `count` WebSockets on one task over the source addresses
 * given, with one epoll loop, and times each log's arrival on every one of them. The time is
 * the kernel's: when the frame reached the socket (SO_TIMESTAMPNS, CLOCK_REALTIME, the clock
 * the load generator writes each log's send time with), not when this process got round to
 * reading it, so the load generator may pause it (SIGSTOP) while the servers send.
 * bench/watchers.ts compiles it with the machine's `cc` and drives it:
 *
 *   watchers <host> <port> <path> <task id> <count> <connect batch> <source,source,...>
 *
 *   stdout → connected <failed>          every socket subscribed (or failed)
 *          → received <seq>              every socket still open has log <seq>
 *          → note <text>                 something worth reading (at most 10)
 *          → report <lost> <dup> <order> <malformed> <dropped> <unstamped>, then latencies <seq> <ms>...
 *            per sequence number asked, then end
 *   stdin  ← report <seq>...             ms from send to arrival per log, on each subscribed socket
 *          ← close (or end of input)     exits, closing every socket
 *
 * A log frame is checked as far as the counters need: its task, its id (ids must grow on each
 * socket: `order`), and the `bench#<seq>#<sent ms>#` mark in its message (a seq seen twice on
 * a socket: `dup`). The WebSocket side does what a watcher needs: the upgrade, unmasked frames
 * from the server (any length, split across reads or several in one), pongs, close frames.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

enum { CONNECTING, UPGRADING, WAITING, LIVE, CLOSED };
enum { OP_TEXT = 0x1, OP_CLOSE = 0x8, OP_PING = 0x9 };
#define SUBSCRIBE_TIMEOUT_MS 30000.0
#define MAX_SEQ (1 << 22)
#define MAX_NOTES 10

typedef struct {
  uint32_t seq;
  double ms;
} Arrival;

typedef struct {
  int fd;
  uint8_t state;
  /** It got `subscribed` (and was LIVE until the server closed it). */
  uint8_t subscribed;
  double started;
  /** Bytes of an incomplete response head or frame, kept until the rest arrives. */
  char *pending;
  size_t pendingLen;
  uint64_t lastMs, lastSeq;
  Arrival *arrived;
  uint32_t arrivedLen, arrivedCap;
} Watcher;

static const char *host, *path, *taskId;
static int port;
static char request[1024];
static size_t requestLen;
static char taskField[256];
static Watcher *watchers;
static int count, opened, settled, failed, openCount, epfd;
static long dups, order, malformed, dropped;
/** Log frames timed when read, the kernel having given no receive time; whether the last read had one. */
static long unstamped;
static int readStamped;
static int notes;
/** Per log sequence number: open sockets that have it, and whether `received` was said. */
static uint32_t *arrivals;
static uint8_t *announced;
static uint32_t seqLimit;
static char *scratch;
static size_t scratchCap;

static double wallNow(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void writeAll(const char *s, size_t n) {
  while (n > 0) {
    ssize_t k = write(1, s, n);
    if (k < 0) {
      if (errno == EINTR) continue;
      exit(1);
    }
    s += k;
    n -= (size_t)k;
  }
}

static void say(const char *fmt, ...) {
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line - 1, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if (n > (int)sizeof line - 2) n = sizeof line - 2;
  line[n] = '\n';
  writeAll(line, (size_t)n + 1);
}

/** A note with up to 200 bytes of a frame, on one line. */
static void note(const char *what, const char *data, size_t len) {
  if (notes >= MAX_NOTES) return;
  notes++;
  char text[201];
  size_t n = len < 200 ? len : 200;
  for (size_t i = 0; i < n; i++) text[i] = data[i] == '\n' || data[i] == '\r' ? ' ' : data[i];
  text[n] = 0;
  say("note %s%s", what, text);
}

static void announce(uint32_t seq) {
  if (announced[seq] || arrivals[seq] != (uint32_t)openCount || openCount == 0) return;
  announced[seq] = 1;
  say("received %u", seq);
}

static void startNext(void);

/** A socket stops: failed before it subscribed, or dropped by the server after. */
static void finish(Watcher *w, int code, const char *reason) {
  if (w->state == CLOSED) return;
  int wasLive = w->state == LIVE;
  w->state = CLOSED;
  close(w->fd);
  free(w->pending);
  w->pending = NULL;
  char why[160];
  snprintf(why, sizeof why, "%d %s", code, reason);
  if (wasLive) {
    // Only open sockets count towards `received`.
    openCount--;
    for (uint32_t j = 0; j < w->arrivedLen; j++) arrivals[w->arrived[j].seq]--;
    dropped++;
    note("socket closed by the server: ", why, strlen(why));
    for (uint32_t s = 0; s < seqLimit; s++) announce(s);
  } else {
    failed++;
    settled++;
    note("subscribe failed: ", why, strlen(why));
    startNext();
  }
}

static const char *find(const char *hay, size_t len, const char *needle) {
  return memmem(hay, len, needle, strlen(needle));
}

/** Reads the digits at *p (up to end), moving past them; -1 when there are none. */
static int64_t digits(const char **p, const char *end) {
  const char *s = *p;
  int64_t n = 0;
  while (s < end && *s >= '0' && *s <= '9' && s - *p < 18) n = n * 10 + (*s++ - '0');
  if (s == *p) return -1;
  *p = s;
  return n;
}

static void onLog(Watcher *w, const char *t, size_t len, double at) {
  const char *end = t + len;
  const char *id = find(t, len, "\"id\":\"");
  const char *mark = find(t, len, "bench#");
  int64_t ms = -1, idSeq = -1, seq = -1;
  double sent = -1;
  if (id) {
    const char *p = id + 6;
    ms = digits(&p, end);
    if (ms >= 0 && p < end && *p == '-') {
      p++;
      idSeq = digits(&p, end);
    }
  }
  if (mark) {
    const char *p = mark + 6;
    seq = digits(&p, end);
    if (seq >= 0 && p < end && *p == '#') {
      char *after;
      sent = strtod(p + 1, &after);
      if (after == p + 1 || after >= end || *after != '#') sent = -1;
    }
  }
  if (idSeq < 0 || seq < 0 || seq >= MAX_SEQ || sent < 0 || !find(t, len, taskField)) {
    malformed++;
    note("unreadable log frame: ", t, len);
    return;
  }
  // The same id again is a duplicate (counted below by seq), not a reordering.
  if ((uint64_t)ms < w->lastMs || ((uint64_t)ms == w->lastMs && (uint64_t)idSeq < w->lastSeq)) order++;
  else {
    w->lastMs = (uint64_t)ms;
    w->lastSeq = (uint64_t)idSeq;
  }
  for (uint32_t i = 0; i < w->arrivedLen; i++)
    if (w->arrived[i].seq == (uint32_t)seq) {
      dups++;
      return;
    }
  if (w->arrivedLen == w->arrivedCap) {
    w->arrivedCap = w->arrivedCap ? 2 * w->arrivedCap : 4;
    w->arrived = realloc(w->arrived, w->arrivedCap * sizeof(Arrival));
  }
  w->arrived[w->arrivedLen++] = (Arrival){(uint32_t)seq, at - sent};
  if (!readStamped) unstamped++;
  if ((uint32_t)seq >= seqLimit) {
    uint32_t limit = (uint32_t)seq + 1024;
    arrivals = realloc(arrivals, limit * sizeof *arrivals);
    announced = realloc(announced, limit);
    memset(arrivals + seqLimit, 0, (limit - seqLimit) * sizeof *arrivals);
    memset(announced + seqLimit, 0, limit - seqLimit);
    seqLimit = limit;
  }
  arrivals[seq]++;
  announce((uint32_t)seq);
}

static void onText(Watcher *w, const char *t, size_t len, double at) {
  if (len >= 13 && memcmp(t, "{\"type\":\"log\"", 13) == 0) {
    if (w->state == LIVE) onLog(w, t, len, at);
    else note("log before subscribed: ", t, len);
    return;
  }
  if (len >= 20 && memcmp(t, "{\"type\":\"subscribed\"", 20) == 0 && w->state == WAITING) {
    if (!find(t, len, taskField)) {
      malformed++;
      note("subscribed frame for another task: ", t, len);
    }
    w->state = LIVE;
    w->subscribed = 1;
    openCount++;
    settled++;
    startNext();
    return;
  }
  note("unexpected frame: ", t, len);
}

static void sendControl(Watcher *w, int opcode, const char *payload, size_t len) {
  // A client frame must be masked; an all-zero mask leaves the payload as it is.
  char frame[6 + 125];
  if (len > 125) len = 125;
  frame[0] = (char)(0x80 | opcode);
  frame[1] = (char)(0x80 | len);
  memset(frame + 2, 0, 4);
  memcpy(frame + 6, payload, len);
  if (write(w->fd, frame, 6 + len) < 0) finish(w, 1006, strerror(errno));
}

/**
 * Handles the bytes read: the upgrade's response head, then frames; keeps an incomplete rest.
 * `arrivedAt` is when the kernel received the last of them.
 */
static void onBytes(Watcher *w, char *buf, size_t len, double arrivedAt) {
  size_t used = 0;
  if (w->state == UPGRADING) {
    const char *headEnd = find(buf, len, "\r\n\r\n");
    if (!headEnd) goto keep;
    if (len < 12 || memcmp(buf, "HTTP/1.1 101", 12) != 0) {
      const char *eol = find(buf, len, "\r\n");
      char status[120];
      snprintf(status, sizeof status, "upgrade refused: %.*s", (int)(eol - buf < 100 ? eol - buf : 100), buf);
      return finish(w, 1006, status);
    }
    w->state = WAITING;
    used = (size_t)(headEnd - buf) + 4;
  }
  while (w->state != CLOSED && len - used >= 2) {
    const uint8_t *b = (const uint8_t *)buf + used;
    int fin = b[0] & 0x80, opcode = b[0] & 0x0f;
    uint64_t length = b[1] & 0x7f;
    size_t start = used + 2;
    if (length == 126) {
      if (len < start + 2) break;
      length = ((uint64_t)b[2] << 8) | b[3];
      start += 2;
    } else if (length == 127) {
      if (len < start + 8) break;
      length = 0;
      for (int i = 0; i < 8; i++) length = (length << 8) | b[2 + i];
      start += 8;
    }
    if (len - start < length) break;
    char *payload = buf + start;
    used = start + (size_t)length;
    if (!fin) return finish(w, 1002, "fragmented message");
    if (opcode == OP_TEXT) onText(w, payload, (size_t)length, arrivedAt);
    else if (opcode == OP_PING) sendControl(w, 0xa, payload, (size_t)length);
    else if (opcode == OP_CLOSE) {
      int code = length >= 2 ? ((uint8_t)payload[0] << 8 | (uint8_t)payload[1]) : 1005;
      char reason[128];
      snprintf(reason, sizeof reason, "%.*s", length >= 2 ? (int)(length - 2 < 120 ? length - 2 : 120) : 0, payload + 2);
      return finish(w, code, reason);
    }
  }
  if (w->state == CLOSED) return;
keep:
  free(w->pending);
  w->pending = NULL;
  w->pendingLen = len - used;
  if (w->pendingLen) {
    w->pending = malloc(w->pendingLen);
    memcpy(w->pending, buf + used, w->pendingLen);
  }
}

static void onReadable(Watcher *w) {
  size_t room = 65536;
  if (scratchCap < w->pendingLen + room) {
    scratchCap = w->pendingLen + room;
    scratch = realloc(scratch, scratchCap);
  }
  if (w->pendingLen) memcpy(scratch, w->pending, w->pendingLen);
  struct iovec iov = {scratch + w->pendingLen, room};
  union {
    char buf[CMSG_SPACE(sizeof(struct timespec))];
    struct cmsghdr align;
  } control;
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf, .msg_controllen = sizeof control.buf};
  ssize_t n = recvmsg(w->fd, &msg, 0);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (n <= 0) return finish(w, 1006, n == 0 ? "connection closed" : strerror(errno));
  // The kernel's receive time of the last segment read (SO_TIMESTAMPNS), or now when it has none.
  double arrivedAt = -1;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
      struct timespec ts;
      memcpy(&ts, CMSG_DATA(c), sizeof ts);
      arrivedAt = ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
    }
  readStamped = arrivedAt >= 0;
  if (!readStamped) arrivedAt = wallNow();
  onBytes(w, scratch, w->pendingLen + (size_t)n, arrivedAt);
}

static void onWritable(Watcher *w) {
  int err = 0;
  socklen_t errLen = sizeof err;
  getsockopt(w->fd, SOL_SOCKET, SO_ERROR, &err, &errLen);
  if (err) return finish(w, 1006, strerror(err));
  if (write(w->fd, request, requestLen) != (ssize_t)requestLen) return finish(w, 1006, "upgrade request not written");
  w->state = UPGRADING;
  struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)(w - watchers)};
  epoll_ctl(epfd, EPOLL_CTL_MOD, w->fd, &ev);
}

static struct sockaddr_in *sources;
static int sourceCount;
static struct sockaddr_in server;
static int connectBatch;

/** Opens sockets until `connectBatch` are connecting or waiting for `subscribed`. */
static void startNext(void) {
  while (opened < count && opened - settled < connectBatch) {
    Watcher *w = &watchers[opened];
    w->started = wallNow();
    w->state = CONNECTING;
    int i = opened++;
    w->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (w->fd < 0) {
      w->state = CLOSED;
      failed++;
      settled++;
      note("subscribe failed: socket: ", strerror(errno), strlen(strerror(errno)));
      continue;
    }
    // The port is chosen at connect, for this destination: no search of the address's free ports at bind.
    int one = 1;
    setsockopt(w->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    setsockopt(w->fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one);
    struct sockaddr_in *src = &sources[i % sourceCount];
    if (bind(w->fd, (struct sockaddr *)src, sizeof *src) < 0 ||
        (connect(w->fd, (struct sockaddr *)&server, sizeof server) < 0 && errno != EINPROGRESS)) {
      const char *why = strerror(errno);
      close(w->fd);
      w->state = CLOSED;
      failed++;
      settled++;
      note("subscribe failed: connect: ", why, strlen(why));
      continue;
    }
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.u32 = (uint32_t)i};
    epoll_ctl(epfd, EPOLL_CTL_ADD, w->fd, &ev);
  }
}

/** Answers `report <seq>...`: the counters, and each subscribed socket's latency per log. */
static void report(char *args) {
  uint32_t seqs[1024];
  int n = 0;
  for (char *tok = strtok(args, " "); tok && n < 1024; tok = strtok(NULL, " ")) seqs[n++] = (uint32_t)strtoul(tok, NULL, 10);
  long lost = 0;
  size_t cap = 64 + (size_t)count * 16, used;
  char *line = malloc(cap);
  for (int k = 0; k < n; k++)
    for (int i = 0; i < count; i++) {
      Watcher *w = &watchers[i];
      if (!w->subscribed) continue;
      int has = 0;
      for (uint32_t j = 0; j < w->arrivedLen && !has; j++) has = w->arrived[j].seq == seqs[k];
      lost += !has;
    }
  say("report %ld %ld %ld %ld %ld %ld", lost, dups, order, malformed, dropped, unstamped);
  for (int k = 0; k < n; k++) {
    used = (size_t)snprintf(line, cap, "latencies %u", seqs[k]);
    for (int i = 0; i < count; i++) {
      Watcher *w = &watchers[i];
      if (!w->subscribed) continue;
      for (uint32_t j = 0; j < w->arrivedLen; j++)
        if (w->arrived[j].seq == seqs[k]) used += (size_t)snprintf(line + used, cap - used, " %.2f", w->arrived[j].ms);
    }
    line[used++] = '\n';
    writeAll(line, used);
  }
  free(line);
  say("end");
}

/** Commands from the load generator, a line at a time. */
static void onCommand(void) {
  static char in[65536];
  static size_t inLen;
  ssize_t n = read(0, in + inLen, sizeof in - 1 - inLen);
  if (n <= 0) exit(0);
  inLen += (size_t)n;
  char *nl;
  while ((nl = memchr(in, '\n', inLen))) {
    *nl = 0;
    if (strcmp(in, "close") == 0) exit(0);
    if (strncmp(in, "report", 6) == 0) report(in + 6);
    size_t rest = inLen - (size_t)(nl + 1 - in);
    memmove(in, nl + 1, rest);
    inLen = rest;
  }
  if (inLen == sizeof in - 1) inLen = 0;
}

int main(int argc, char **argv) {
  if (argc != 8) {
    fprintf(stderr, "usage: %s host port path task-id count connect-batch source,source,...\n", argv[0]);
    return 2;
  }
  host = argv[1];
  port = atoi(argv[2]);
  path = argv[3];
  taskId = argv[4];
  count = atoi(argv[5]);
  connectBatch = atoi(argv[6]);
  if (count < 0 || connectBatch < 1) return 2;
  struct rlimit lim;
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }
  server.sin_family = AF_INET;
  server.sin_port = htons((uint16_t)port);
  if (inet_pton(AF_INET, host, &server.sin_addr) != 1) return 2;
  for (char *s = argv[7], *tok; (tok = strtok(s, ",")); s = NULL) {
    sources = realloc(sources, (size_t)(sourceCount + 1) * sizeof *sources);
    struct sockaddr_in *a = &sources[sourceCount++];
    memset(a, 0, sizeof *a);
    a->sin_family = AF_INET;
    if (inet_pton(AF_INET, tok, &a->sin_addr) != 1) return 2;
  }
  if (sourceCount == 0) return 2;
  requestLen = (size_t)snprintf(request, sizeof request,
                                "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
                                path, host, port);
  snprintf(taskField, sizeof taskField, "\"task_id\":\"%s\"", taskId);
  watchers = calloc((size_t)count + 1, sizeof *watchers);
  epfd = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event in = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
  epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &in);
  startNext();
  int saidConnected = count == 0;
  if (saidConnected) say("connected 0");
  static struct epoll_event events[1024];
  double lastCheck = wallNow();
  for (;;) {
    int n = epoll_wait(epfd, events, 1024, saidConnected ? -1 : 1000);
    if (n < 0 && errno != EINTR) return 1;
    for (int k = 0; k < n; k++) {
      uint32_t i = events[k].data.u32;
      if (i == UINT32_MAX) {
        onCommand();
        continue;
      }
      Watcher *w = &watchers[i];
      if (w->state == CLOSED) continue;
      if (w->state == CONNECTING) {
        if (events[k].events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) onWritable(w);
      } else if (events[k].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) onReadable(w);
    }
    if (!saidConnected) {
      double now = wallNow();
      if (now - lastCheck >= 1000) {
        lastCheck = now;
        for (int i = 0; i < opened; i++) {
          Watcher *w = &watchers[i];
          if (w->state != CLOSED && w->state != LIVE && now - w->started > SUBSCRIBE_TIMEOUT_MS)
            finish(w, 1006, "no subscribed frame within 30 s");
        }
      }
      if (settled == count) {
        saidConnected = 1;
        say("connected %d", failed);
      }
    }
  }
}
