// Baseline for bench/allreduce.sh: plain MPI_Allreduce (in place, float sum)
// timed like `dit comm-check bench`, to separate dit's overhead from MPI's.
// bench/allreduce.sh builds it with mpicc when BASELINE=1.
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank, size; MPI_Comm_rank(MPI_COMM_WORLD, &rank); MPI_Comm_size(MPI_COMM_WORLD, &size);
  int iters = argc > 1 ? atoi(argv[1]) : 10;
  int mibs[] = {4, 64, 256};
  for (int k = 0; k < 3; k++) {
    size_t n = (size_t)mibs[k] * (1 << 20) / 4;
    float *buf = malloc(n * 4);
    for (size_t i = 0; i < n; i++) buf[i] = 1.0f;
    for (int w = 0; w < 2; w++) MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = MPI_Wtime();
    for (int i = 0; i < iters; i++) MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    double per = (MPI_Wtime() - t0) / iters;
    if (rank == 0) printf("C MPI_Allreduce %4d MiB on %d ranks: %8.3f ms  algbw %6.2f GB/s\n", mibs[k], size, per * 1e3, n * 4 / per / 1e9);
    free(buf);
  }
  MPI_Finalize();
}
