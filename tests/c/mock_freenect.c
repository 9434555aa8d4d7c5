/* A stand-in libfreenect for the failure paths a fakenect dump cannot produce. It exports the
 * functions framerec's freenect source loads, with libfreenect.h's signatures, and behaves per
 * environment variables:
 *   MOCK_DEVICES      Kinects found (default 1)
 *   MOCK_FAIL_AFTER   after this many frames of an opened device, the event loop fails (as on
 *                     an unplug); default never
 *   MOCK_FAIL_OPENS   only the first N opens fail that way (default all)
 *   MOCK_TS_START     device timestamp of the first frame (default 0); +2,000,000 a frame
 * Frame k (counted over the whole process) holds sample i = (k * 7 + i) & 0x7ff. */
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

typedef struct {
    uint32_t reserved;
    int resolution;
    int32_t format;
    int32_t bytes;
    int16_t width;
    int16_t height;
    int8_t data_bits_per_pixel;
    int8_t padding_bits_per_pixel;
    int8_t framerate;
    int8_t is_valid;
} freenect_frame_mode;

typedef void (*freenect_depth_cb)(void *dev, void *depth, uint32_t timestamp);

static freenect_depth_cb depth_cb;
static int running, opens, sent_this_open;
static uint64_t frame_no;
static uint32_t ts;
static int ts_set;
static uint16_t buf[640 * 480];

static long env(const char *k, long d) {
    const char *v = getenv(k);
    return v ? atol(v) : d;
}

int freenect_init(void **ctx, void *usb) { (void)usb; *ctx = (void *)1; return 0; }
int freenect_shutdown(void *ctx) { (void)ctx; return 0; }
void freenect_select_subdevices(void *ctx, int subdevs) { (void)ctx; (void)subdevs; }
int freenect_num_devices(void *ctx) { (void)ctx; return (int)env("MOCK_DEVICES", 1); }

int freenect_open_device(void *ctx, void **dev, int index) {
    (void)ctx;
    if (index >= env("MOCK_DEVICES", 1)) return -1;
    opens++;
    sent_this_open = 0;
    *dev = (void *)2;
    return 0;
}

int freenect_close_device(void *dev) { (void)dev; return 0; }

freenect_frame_mode freenect_find_depth_mode(int res, int fmt) {
    freenect_frame_mode m = {0, res, fmt, 640 * 480 * 2, 640, 480, 11, 5, 30, 1};
    return m;
}

int freenect_set_depth_mode(void *dev, freenect_frame_mode m) {
    (void)dev;
    return m.bytes == 640 * 480 * 2 && m.width == 640 && m.height == 480 ? 0 : -1;
}

void freenect_set_depth_callback(void *dev, freenect_depth_cb cb) { (void)dev; depth_cb = cb; }
int freenect_start_depth(void *dev) { (void)dev; running = 1; return 0; }
int freenect_stop_depth(void *dev) { (void)dev; running = 0; return 0; }

int freenect_process_events_timeout(void *ctx, void *timeout) {
    (void)ctx;
    (void)timeout;
    long fail_after = env("MOCK_FAIL_AFTER", -1);
    if (fail_after >= 0 && sent_this_open >= fail_after && opens <= env("MOCK_FAIL_OPENS", 1L << 30))
        return -1;
    usleep(5000);
    if (!running || !depth_cb) return 0;
    if (!ts_set) {
        ts = (uint32_t)env("MOCK_TS_START", 0);
        ts_set = 1;
    }
    for (int i = 0; i < 640 * 480; i++) buf[i] = (uint16_t)((frame_no * 7 + i) & 0x7ff);
    depth_cb((void *)2, buf, ts);
    ts += 2000000;
    frame_no++;
    sent_this_open++;
    return 0;
}
