"""The workloads of bench/native.py, written the same way in each language: Rust (for
ferrocell's cells), C (for `%%c`), Python for Numba, Cython, and OpenCL C (for
`%%opencl` and PyOpenCL)."""

RUST = r"""
fn count_primes(limit: u64) -> usize {
    fn is_prime(n: u64) -> bool {
        if n < 2 { return false; }
        let mut d = 2;
        while d * d <= n { if n % d == 0 { return false; } d += 1; }
        true
    }
    (0..limit).filter(|&n| is_prime(n)).count()
}

fn monte_carlo_pi(samples: u64) -> f64 {
    let mut s: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut inside = 0u64;
    for _ in 0..samples {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        let x = (s >> 11) as f64 / 9007199254740992.0;
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        let y = (s >> 11) as f64 / 9007199254740992.0;
        if x * x + y * y <= 1.0 { inside += 1; }
    }
    4.0 * inside as f64 / samples as f64
}

fn mandelbrot(w: u64, h: u64) -> u64 {
    let mut total = 0u64;
    for j in 0..h {
        for i in 0..w {
            let cx = -2.0 + 3.0 * i as f64 / w as f64;
            let cy = -1.5 + 3.0 * j as f64 / h as f64;
            let (mut x, mut y, mut k) = (0.0f64, 0.0f64, 0u64);
            while k < 256 && x * x + y * y <= 4.0 {
                let t = x * x - y * y + cx;
                y = 2.0 * x * y + cy;
                x = t;
                k += 1;
            }
            total += k;
        }
    }
    total
}

fn nbody(steps: u64) -> f64 {
    let mut p = [[0.0f64; 3]; 5];
    let mut v = [[0.0f64; 3]; 5];
    let mut m = [0.0f64; 5];
    for i in 0..5 {
        let f = i as f64;
        p[i] = [f, 0.5 * f * f, 0.1 * f];
        v[i] = [0.0, 0.01 * f, 0.0];
        m[i] = 1.0 + f;
    }
    let dt = 0.001;
    for _ in 0..steps {
        for i in 0..5 {
            for j in (i + 1)..5 {
                let d = [p[i][0] - p[j][0], p[i][1] - p[j][1], p[i][2] - p[j][2]];
                let d2 = d[0] * d[0] + d[1] * d[1] + d[2] * d[2] + 0.01;
                let mag = dt / (d2 * d2.sqrt());
                for k in 0..3 {
                    v[i][k] -= d[k] * m[j] * mag;
                    v[j][k] += d[k] * m[i] * mag;
                }
            }
        }
        for i in 0..5 {
            for k in 0..3 { p[i][k] += dt * v[i][k]; }
        }
    }
    p[0][0] + p[0][1] + p[0][2]
}
"""

NUMBA = '''
import numpy as np
from numba import njit, prange

@njit
def is_prime(n):
    if n < 2:
        return False
    d = 2
    while d * d <= n:
        if n % d == 0:
            return False
        d += 1
    return True

@njit
def count_primes(limit):
    c = 0
    for n in range(limit):
        if is_prime(n):
            c += 1
    return c

@njit(parallel=True)
def count_primes_prange(limit, block, parts):
    blocks = limit // block
    counts = np.zeros(parts, dtype=np.int64)
    for r in prange(parts):
        c = 0
        for b in range(r, blocks, parts):
            for n in range(b * block, (b + 1) * block):
                if is_prime(n):
                    c += 1
        counts[r] = c
    return counts.sum()

@njit
def monte_carlo_pi(samples):
    s = np.uint64(0x9E3779B97F4A7C15)
    inside = 0
    for _ in range(samples):
        s ^= s << np.uint64(13); s ^= s >> np.uint64(7); s ^= s << np.uint64(17)
        x = (s >> np.uint64(11)) / 9007199254740992.0
        s ^= s << np.uint64(13); s ^= s >> np.uint64(7); s ^= s << np.uint64(17)
        y = (s >> np.uint64(11)) / 9007199254740992.0
        if x * x + y * y <= 1.0:
            inside += 1
    return 4.0 * inside / samples

@njit
def mandelbrot(w, h):
    total = 0
    for j in range(h):
        for i in range(w):
            cx = -2.0 + 3.0 * i / w
            cy = -1.5 + 3.0 * j / h
            x = 0.0; y = 0.0; k = 0
            while k < 256 and x * x + y * y <= 4.0:
                t = x * x - y * y + cx
                y = 2.0 * x * y + cy
                x = t
                k += 1
            total += k
    return total

@njit
def nbody(steps):
    p = np.zeros((5, 3)); v = np.zeros((5, 3)); m = np.zeros(5)
    for i in range(5):
        f = float(i)
        p[i, 0] = f; p[i, 1] = 0.5 * f * f; p[i, 2] = 0.1 * f
        v[i, 1] = 0.01 * f
        m[i] = 1.0 + f
    dt = 0.001
    for _ in range(steps):
        for i in range(5):
            for j in range(i + 1, 5):
                d0 = p[i, 0] - p[j, 0]; d1 = p[i, 1] - p[j, 1]; d2_ = p[i, 2] - p[j, 2]
                d2 = d0 * d0 + d1 * d1 + d2_ * d2_ + 0.01
                mag = dt / (d2 * np.sqrt(d2))
                v[i, 0] -= d0 * m[j] * mag; v[j, 0] += d0 * m[i] * mag
                v[i, 1] -= d1 * m[j] * mag; v[j, 1] += d1 * m[i] * mag
                v[i, 2] -= d2_ * m[j] * mag; v[j, 2] += d2_ * m[i] * mag
        for i in range(5):
            for k in range(3):
                p[i, k] += dt * v[i, k]
    return p[0, 0] + p[0, 1] + p[0, 2]
'''



C = r"""%%c -O3 -lm
#include <math.h>
#include <stdint.h>

static int is_prime_c(uint64_t n) {
    if (n < 2) return 0;
    for (uint64_t d = 2; d * d <= n; d++)
        if (n % d == 0) return 0;
    return 1;
}

uint64_t count_primes_c(uint64_t limit) {
    uint64_t c = 0;
    for (uint64_t n = 0; n < limit; n++) c += is_prime_c(n);
    return c;
}

double monte_carlo_pi_c(uint64_t samples) {
    uint64_t s = 0x9E3779B97F4A7C15ull, inside = 0;
    for (uint64_t i = 0; i < samples; i++) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        double x = (double)(s >> 11) / 9007199254740992.0;
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        double y = (double)(s >> 11) / 9007199254740992.0;
        if (x * x + y * y <= 1.0) inside++;
    }
    return 4.0 * (double)inside / (double)samples;
}

uint64_t mandelbrot_c(uint64_t w, uint64_t h) {
    uint64_t total = 0;
    for (uint64_t j = 0; j < h; j++)
        for (uint64_t i = 0; i < w; i++) {
            double cx = -2.0 + 3.0 * i / w, cy = -1.5 + 3.0 * j / h, x = 0, y = 0;
            uint64_t k = 0;
            while (k < 256 && x * x + y * y <= 4.0) {
                double t = x * x - y * y + cx;
                y = 2.0 * x * y + cy;
                x = t;
                k++;
            }
            total += k;
        }
    return total;
}

double nbody_c(uint64_t steps) {
    double p[5][3], v[5][3], m[5];
    for (int i = 0; i < 5; i++) {
        double f = i;
        p[i][0] = f; p[i][1] = 0.5 * f * f; p[i][2] = 0.1 * f;
        v[i][0] = 0; v[i][1] = 0.01 * f; v[i][2] = 0;
        m[i] = 1.0 + f;
    }
    double dt = 0.001;
    for (uint64_t s = 0; s < steps; s++) {
        for (int i = 0; i < 5; i++)
            for (int j = i + 1; j < 5; j++) {
                double d[3] = {p[i][0] - p[j][0], p[i][1] - p[j][1], p[i][2] - p[j][2]};
                double d2 = d[0] * d[0] + d[1] * d[1] + d[2] * d[2] + 0.01;
                double mag = dt / (d2 * sqrt(d2));
                for (int k = 0; k < 3; k++) {
                    v[i][k] -= d[k] * m[j] * mag;
                    v[j][k] += d[k] * m[i] * mag;
                }
            }
        for (int i = 0; i < 5; i++)
            for (int k = 0; k < 3; k++) p[i][k] += dt * v[i][k];
    }
    return p[0][0] + p[0][1] + p[0][2];
}
"""

CYTHON = """
# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
from libc.math cimport sqrt
from libc.stdint cimport uint64_t

cdef bint is_prime(uint64_t n) noexcept nogil:
    if n < 2:
        return False
    cdef uint64_t d = 2
    while d * d <= n:
        if n % d == 0:
            return False
        d += 1
    return True

def count_primes(uint64_t limit):
    cdef uint64_t n, c = 0
    for n in range(limit):
        if is_prime(n):
            c += 1
    return c

def monte_carlo_pi(uint64_t samples):
    cdef uint64_t s = 0x9E3779B97F4A7C15, inside = 0, i
    cdef double x, y
    for i in range(samples):
        s ^= s << 13; s ^= s >> 7; s ^= s << 17
        x = <double>(s >> 11) / 9007199254740992.0
        s ^= s << 13; s ^= s >> 7; s ^= s << 17
        y = <double>(s >> 11) / 9007199254740992.0
        if x * x + y * y <= 1.0:
            inside += 1
    return 4.0 * inside / samples

def mandelbrot(uint64_t w, uint64_t h):
    cdef uint64_t total = 0, i, j, k
    cdef double cx, cy, x, y, t
    for j in range(h):
        for i in range(w):
            cx = -2.0 + 3.0 * i / w
            cy = -1.5 + 3.0 * j / h
            x = 0.0; y = 0.0; k = 0
            while k < 256 and x * x + y * y <= 4.0:
                t = x * x - y * y + cx
                y = 2.0 * x * y + cy
                x = t
                k += 1
            total += k
    return total

def nbody(uint64_t steps):
    cdef double p[5][3]
    cdef double v[5][3]
    cdef double m[5]
    cdef double d[3]
    cdef double d2, mag, f, dt = 0.001
    cdef int i, j, k
    cdef uint64_t s
    for i in range(5):
        f = i
        p[i][0] = f; p[i][1] = 0.5 * f * f; p[i][2] = 0.1 * f
        v[i][0] = 0.0; v[i][1] = 0.01 * f; v[i][2] = 0.0
        m[i] = 1.0 + f
    for s in range(steps):
        for i in range(5):
            for j in range(i + 1, 5):
                for k in range(3):
                    d[k] = p[i][k] - p[j][k]
                d2 = d[0] * d[0] + d[1] * d[1] + d[2] * d[2] + 0.01
                mag = dt / (d2 * sqrt(d2))
                for k in range(3):
                    v[i][k] -= d[k] * m[j] * mag
                    v[j][k] += d[k] * m[i] * mag
        for i in range(5):
            for k in range(3):
                p[i][k] += dt * v[i][k]
    return p[0][0] + p[0][1] + p[0][2]
"""

# A Mandelbrot set as an OpenCL kernel, the same for %%opencl and PyOpenCL.
OPENCL = """
__kernel void mandel(__global uint* iters, uint w, uint h) {
    uint i = get_global_id(0), j = get_global_id(1);
    double cx = -2.0 + 3.0 * i / w, cy = -1.5 + 3.0 * j / h;
    double x = 0.0, y = 0.0;
    uint k = 0;
    while (k < 256 && x * x + y * y <= 4.0) {
        double t = x * x - y * y + cx;
        y = 2.0 * x * y + cy;
        x = t;
        k++;
    }
    iters[j * w + i] = k;
}
"""
