/* train/rng.h — the splitmix64 stream behind every seeded choice of training (head
 * initialisation, epoch order): the same numbers on every machine and rank. */
#ifndef QD_TRAIN_RNG_H
#define QD_TRAIN_RNG_H

#include <stdint.h>

static inline uint64_t qd_train_splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

#endif
