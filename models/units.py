"""Unit constants. Everything inside the models is SI (s, bytes, FLOP, J, bytes/s);
convert only when displaying."""

KB, MB, GB, TB = 1e3, 1e6, 1e9, 1e12          # decimal: bandwidths, vendor capacities
KiB, MiB, GiB, TiB = 2**10, 2**20, 2**30, 2**40  # binary: memory footprints
TFLOPS = 1e12
MS, US, NS = 1e-3, 1e-6, 1e-9
PJ = 1e-12
