// Baseline for bench/allreduce.sh: plain MPI_Allreduce (float sum) timed like
// `dit comm-check bench`, to separate dit's overhead from MPI's.
//   allreduce_baseline ITERS          in place (MPI_IN_PLACE)
//   allreduce_baseline ITERS copy     from a separate send buffer, copied first
// bench/allreduce.sh builds and runs both when BASELINE=1.
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank, size;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  int iters = argc > 1 ? atoi(argv[1]) : 10;
  int copy = argc > 2 && strcmp(argv[2], "copy") == 0;
  int mibs[] = {4, 64, 256};
  for (int k = 0; k < 3; k++) {
    size_t n = (size_t)mibs[k] * (1 << 20) / sizeof(float);
    float *buf = malloc(n * sizeof(float)), *send = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) buf[i] = 1.0f;
    double t0 = 0;
    for (int i = 0; i < iters + 2; i++) {
      if (i == 2) {  // two untimed calls, as dit's bench
        MPI_Barrier(MPI_COMM_WORLD);
        t0 = MPI_Wtime();
      }
      if (copy) {
        memcpy(send, buf, n * sizeof(float));
        MPI_Allreduce(send, buf, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
      } else {
        MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
      }
    }
    double per = (MPI_Wtime() - t0) / iters;
    if (rank == 0)
      printf("C MPI_Allreduce %-7s %4d MiB on %d ranks: %8.3f ms  algbw %6.2f GB/s\n",
             copy ? "copy" : "inplace", mibs[k], size, per * 1e3, n * sizeof(float) / per / 1e9);
    free(buf);
    free(send);
  }
  MPI_Finalize();
  return 0;
}
