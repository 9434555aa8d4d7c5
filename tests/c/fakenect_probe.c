/* Receives N depth frames through the real libfreenect API (11-bit mode) and prints, per frame,
 * the device timestamp and an FNV-1a 64 checksum of its bytes. Run under `fakenect DUMP` it
 * proves a dump replays: tests compare the lines with the frames they recorded. */
#include <libfreenect.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static int frames = 0;

static void on_depth(freenect_device *dev, void *depth, uint32_t timestamp) {
    (void)dev;
    const uint8_t *p = depth;
    uint64_t h = 14695981039346656037ULL;
    for (int i = 0; i < 640 * 480 * 2; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    printf("%u %016llx\n", timestamp, (unsigned long long)h);
    fflush(stdout);
    frames++;
}

int main(int argc, char **argv) {
    int want = argc > 1 ? atoi(argv[1]) : 1;
    freenect_context *ctx;
    freenect_device *dev;
    if (freenect_init(&ctx, NULL) < 0) return 2;
    if (freenect_open_device(ctx, &dev, 0) < 0) return 3;
    freenect_set_depth_mode(dev, freenect_find_depth_mode(FREENECT_RESOLUTION_MEDIUM, FREENECT_DEPTH_11BIT));
    freenect_set_depth_callback(dev, on_depth);
    freenect_start_depth(dev);
    while (frames < want && freenect_process_events(ctx) >= 0) {
    }
    freenect_stop_depth(dev);
    freenect_close_device(dev);
    freenect_shutdown(ctx);
    return frames == want ? 0 : 4;
}
