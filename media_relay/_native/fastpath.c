/* The forward path's native half: SRTP-protect a player's RTP with the very libsrtp session (srtp_t) that
 * aiortc's DTLS transport keeps for it (pylibsrtp's, called through its own srtp_protect: no second libsrtp,
 * one SRTP state per player), then write it to the player's ICE socket.  Built by scripts/build_fastpath.py
 * (cffi, out-of-line API mode); media_relay/fastpath.py falls back to pure Python without it. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#define FP_BUFFER 2048
#define FP_MAX_INPUT (FP_BUFFER - 256) /* room for libsrtp's trailer (tag and MKI) */
#define FP_SRTP_ERROR 1000             /* a libsrtp status s is returned as -(FP_SRTP_ERROR + s) */

typedef int (*fp_protect_fn)(void *session, void *packet, int *length);

typedef struct {
    void *protect;  /* srtp_protect of the libsrtp the session was created with */
    void *session;  /* its srtp_t */
    int fd;         /* the ICE pair's UDP socket (non-blocking) */
    int addrlen;
    union {
        struct sockaddr_in v4;
        struct sockaddr_in6 v6;
    } addr;
} fp_route;

static int fp_set_address(fp_route *route, int family, const char *host, int port) {
    memset(&route->addr, 0, sizeof(route->addr));
    if (family == AF_INET) {
        route->addr.v4.sin_family = AF_INET;
        route->addr.v4.sin_port = htons((uint16_t)port);
        if (inet_pton(AF_INET, host, &route->addr.v4.sin_addr) != 1) return -1;
        route->addrlen = sizeof(struct sockaddr_in);
        return 0;
    }
    if (family == AF_INET6) {
        route->addr.v6.sin6_family = AF_INET6;
        route->addr.v6.sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, host, &route->addr.v6.sin6_addr) != 1) return -1;
        route->addrlen = sizeof(struct sockaddr_in6);
        return 0;
    }
    return -1;
}

/* Protect in place in `buffer` (FP_BUFFER bytes holding `length` bytes of RTP); the protected length or -error. */
static int fp_protect_into(const fp_route *route, char *buffer, int length) {
    int size = length;
    int status = ((fp_protect_fn)route->protect)(route->session, buffer, &size);
    if (status != 0) return -(FP_SRTP_ERROR + status);
    return size;
}

/* The SRTP packet `fp_send` would write, into `out` (FP_BUFFER bytes): its length, or -error. */
static int fp_protect(const fp_route *route, const char *data, int length, char *out) {
    if (length < 12 || length > FP_MAX_INPUT) return -EMSGSIZE;
    memcpy(out, data, (size_t)length);
    return fp_protect_into(route, out, length);
}

/* Protect one RTP packet and send it: the bytes sent, or -errno (-EMSGSIZE: too big), or a libsrtp error. */
static int fp_send(const fp_route *route, const char *data, int length) {
    char buffer[FP_BUFFER] __attribute__((aligned(16)));
    int size = fp_protect(route, data, length, buffer);
    if (size < 0) return size;
    ssize_t sent = sendto(route->fd, buffer, (size_t)size, MSG_DONTWAIT, (const struct sockaddr *)&route->addr,
                          (socklen_t)route->addrlen);
    return sent < 0 ? -errno : (int)sent;
}

/* The same for `count` packets, each to its own route (one call from Python per incoming packet); each result
 * into `results`; the number sent. */
static int fp_send_many(fp_route *const *routes, const char *const *packets, const int *lengths, int *results,
                        int count) {
    int done = 0;
    for (int i = 0; i < count; i++) {
        results[i] = fp_send(routes[i], packets[i], lengths[i]);
        if (results[i] >= 0) done++;
    }
    return done;
}
