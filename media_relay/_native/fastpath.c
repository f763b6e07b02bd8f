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

/* --- One player's track in steady state, rewritten and sent from C (see media_relay/forwarding.py) --------- */

#define FP_HISTORY 1024 /* a power of two, as forwarding.HISTORY_SIZE */
#define FP_SWITCH_GUARD 1024

typedef struct {
    uint16_t in_sequence; /* the publisher's packet it was made of (its payload is in the Ingest's ring) */
    uint16_t out_sequence;
    uint8_t size; /* of the header; 0: empty */
    uint8_t header[20];
} fp_sent;

typedef struct {
    fp_route route;
    uint8_t payload_types[128]; /* the publisher's payload type -> the player's; 255: not forwarded */
    uint32_t ssrc;
    uint32_t timestamp_offset;
    uint32_t last_timestamp;
    int sequence_offset;
    int last_sequence;
    int extension_id; /* the one extension written (audio level or abs-send-time); 0: none */
    int audio;
    int guard; /* the first input sequence since the (re)start; -1: past SWITCH_GUARD */
    int failed; /* a send failed (not a full buffer): Python binds again */
    uint64_t packets_sent;
    uint64_t octets_sent; /* payload octets, as RTCP SR counts */
    uint64_t report_ntp; /* the last frame end's NTP time and what went with it (RTCP SR) */
    uint32_t report_timestamp;
    uint64_t report_packets;
    uint64_t report_octets;
    fp_sent history[FP_HISTORY];
} fp_track;

/* Rewrite one publisher packet for each track and send it (the common case of DownTrack.forward); the copies
 * sent, with their bytes (headers included) added to *bytes. */
static int fp_fanout(fp_track *const *tracks, int count, int payload_type, int marker, int sequence,
                     uint32_t timestamp, int extension, uint64_t ntp, const char *payload, int length,
                     int64_t *bytes) {
    char buffer[FP_BUFFER] __attribute__((aligned(16)));
    int done = 0;
    if (length < 0 || length > FP_MAX_INPUT - 20) return 0;
    for (int i = 0; i < count; i++) {
        fp_track *track = tracks[i];
        int out_type = track->payload_types[payload_type & 0x7F];
        if (out_type == 255) continue;
        if (track->guard >= 0) {
            int since = (sequence - track->guard) & 0xFFFF;
            if (since >= 0x8000) continue; /* older than the (re)start */
            if (since > FP_SWITCH_GUARD) track->guard = -1;
        }
        int out_sequence = (sequence + track->sequence_offset) & 0xFFFF;
        uint32_t out_timestamp = timestamp + track->timestamp_offset;
        int advanced = ((out_sequence - track->last_sequence) & 0xFFFF) < 0x8000;
        unsigned char *h = (unsigned char *)buffer;
        int size = 12;
        h[0] = 0x80;
        h[1] = (unsigned char)((marker ? 0x80 : 0) | out_type);
        h[2] = (unsigned char)(out_sequence >> 8);
        h[3] = (unsigned char)out_sequence;
        h[4] = (unsigned char)(out_timestamp >> 24);
        h[5] = (unsigned char)(out_timestamp >> 16);
        h[6] = (unsigned char)(out_timestamp >> 8);
        h[7] = (unsigned char)out_timestamp;
        h[8] = (unsigned char)(track->ssrc >> 24);
        h[9] = (unsigned char)(track->ssrc >> 16);
        h[10] = (unsigned char)(track->ssrc >> 8);
        h[11] = (unsigned char)track->ssrc;
        if (extension >= 0 && track->extension_id) {
            uint32_t word = track->audio
                                ? ((uint32_t)track->extension_id << 28) | ((uint32_t)(extension & 0xFF) << 16)
                                : ((uint32_t)track->extension_id << 28) | (2u << 24) | (extension & 0xFFFFFF);
            h[0] = 0x90;
            h[12] = 0xBE;
            h[13] = 0xDE;
            h[14] = 0;
            h[15] = 1;
            h[16] = (unsigned char)(word >> 24);
            h[17] = (unsigned char)(word >> 16);
            h[18] = (unsigned char)(word >> 8);
            h[19] = (unsigned char)word;
            size = 20;
        }
        if (advanced) track->last_sequence = out_sequence;
        fp_sent *slot = &track->history[out_sequence & (FP_HISTORY - 1)];
        slot->in_sequence = (uint16_t)sequence;
        slot->out_sequence = (uint16_t)out_sequence;
        slot->size = (uint8_t)size;
        memcpy(slot->header, h, (size_t)size);
        memcpy(buffer + size, payload, (size_t)length);
        int protected_size = fp_protect_into(&track->route, buffer, size + length);
        if (protected_size < 0) {
            track->failed = 1;
            continue;
        }
        ssize_t sent = sendto(track->route.fd, buffer, (size_t)protected_size, MSG_DONTWAIT,
                              (const struct sockaddr *)&track->route.addr, (socklen_t)track->route.addrlen);
        if (sent < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ENOBUFS) track->failed = 1;
            continue;
        }
        done++;
        *bytes += size + length;
        track->packets_sent++;
        track->octets_sent += (uint64_t)length;
        track->last_timestamp = out_timestamp;
        if (ntp) {
            track->report_ntp = ntp;
            track->report_timestamp = out_timestamp;
            track->report_packets = track->packets_sent;
            track->report_octets = track->octets_sent;
        }
    }
    return done;
}

/* The header of the copy sent as `out_sequence` (into `header`, 20 bytes) and the publisher's sequence it was
 * made of: the header's size, or -1 when that copy is no longer kept. */
static int fp_history(const fp_track *track, int out_sequence, char *header, int *in_sequence) {
    const fp_sent *slot = &track->history[out_sequence & (FP_HISTORY - 1)];
    if (!slot->size || slot->out_sequence != (uint16_t)out_sequence) return -1;
    memcpy(header, slot->header, slot->size);
    *in_sequence = slot->in_sequence;
    return slot->size;
}
