// The only code that touches MPI types. Plain functions over ints, pointers and sizes, so no
// MPI handle reaches Swift and the same Swift code would work over any MPI implementation.
#ifndef MPI_SHIM_H
#define MPI_SHIM_H

#include <stddef.h>
#include <stdint.h>

/// MPI_Init (idempotent). Returns 0 or an MPI error code.
int mpi_shim_init(void);
/// MPI_Finalize if initialised and not finalised.
int mpi_shim_finalize(void);
int mpi_shim_rank(void);
int mpi_shim_size(void);
/// In-place sum of `count` floats over MPI_COMM_WORLD, in chunks of at most INT_MAX elements.
int mpi_shim_allreduce_float_sum(float *buffer, size_t count);
/// In-place sum of `count` doubles.
int mpi_shim_allreduce_double_sum(double *buffer, size_t count);
/// Starts an in-place sum of `count` floats (MPI_Iallreduce, chunked) without waiting for it.
int mpi_shim_iallreduce_float_sum(float *buffer, size_t count);
/// Starts an in-place sum of `count` bfloat16 values (their bits), each partial sum rounded to
/// the nearest bfloat16 (ties to even).
int mpi_shim_iallreduce_bf16_sum(uint16_t *buffer, size_t count);
/// Lets the started reductions advance (MPI_Testall); *done = 1 when all have completed.
int mpi_shim_test_all(int *done);
/// Waits for every started reduction (MPI_Waitall).
int mpi_shim_wait_all(void);
/// Rank `root`'s bytes to every rank, in chunks of at most INT_MAX bytes.
int mpi_shim_broadcast(void *buffer, size_t bytes, int root);
int mpi_shim_barrier(void);
/// MPI_Abort(MPI_COMM_WORLD, code): ends every rank of the job.
void mpi_shim_abort(int code);
/// The text of an MPI error code, written into `out` (at most `length` bytes, NUL-terminated).
void mpi_shim_error_string(int code, char *out, size_t length);
/// Wall clock (MPI_Wtime).
double mpi_shim_wtime(void);

#endif
