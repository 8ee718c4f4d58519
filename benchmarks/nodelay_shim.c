/* Diagnostic only (bench_update_ratios_route.py --nodelay-shim): an LD_PRELOAD shim that
 * sets TCP_NODELAY on every socket a process accept()s. TensorBoard's Rust data server
 * (tensorboard-data-server 0.7.x) serves gRPC through tonic's serve_with_incoming, which
 * leaves Nagle's algorithm on, so each RPC answer waits ~40 ms for a delayed ACK. With
 * this shim the benchmark shows what the routes would cost without that stall.
 * Build: gcc -shared -fPIC -O2 -o nodelay_shim.so nodelay_shim.c -ldl */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
static void nd(int fd){ if(fd>=0){int one=1; setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);} }
int accept(int s, struct sockaddr *a, socklen_t *l){ static int (*f)(int, struct sockaddr*, socklen_t*); if(!f) f=dlsym(RTLD_NEXT,"accept"); int fd=f(s,a,l); nd(fd); return fd; }
int accept4(int s, struct sockaddr *a, socklen_t *l, int fl){ static int (*f)(int, struct sockaddr*, socklen_t*, int); if(!f) f=dlsym(RTLD_NEXT,"accept4"); int fd=f(s,a,l,fl); nd(fd); return fd; }
