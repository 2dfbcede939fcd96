/* inlined.h: static inline helpers for inlined.c; square_plus() calls twice() here, so twice's call line inside it is in this header */
#ifndef INLINED_H
#define INLINED_H

extern volatile int sink; /* a volatile read in each helper: code the compiler cannot fold away, so each inlined copy keeps its DWARF entry */

static inline __attribute__((always_inline)) int twice(int v)
{
	return v * 2 + sink;
}

static inline __attribute__((always_inline)) int square_plus(int v)
{
	return twice(v) * v + 1;
}

#endif
