#include "mpi_shim.h"

#include <limits.h>
#include <mpi.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

// bfloat16 sum, for MPI_Op_create: both operands widened to float (exact), added, rounded to the
// nearest bfloat16 with ties to even, as Swift's roundToBFloat16 (Kernels/BFloat16.swift) does;
// a NaN stays a NaN. MPI has no bfloat16 type, so the values travel as MPI_UINT16_T.
static uint16_t bf16_round(float x) {
    uint32_t bits;
    memcpy(&bits, &x, 4);
    if ((bits & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((bits >> 16) | 0x0040u);
    return (uint16_t)((bits + ((bits >> 16) & 1u) + 0x7FFFu) >> 16);
}

static float bf16_widen(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float x;
    memcpy(&x, &bits, 4);
    return x;
}

static void bf16_sum(void *in, void *inout, int *len, MPI_Datatype *type) {
    (void)type;
    const uint16_t *a = (const uint16_t *)in;
    uint16_t *b = (uint16_t *)inout;
    for (int i = 0; i < *len; i++) b[i] = bf16_round(bf16_widen(a[i]) + bf16_widen(b[i]));
}

static MPI_Op bf16_sum_op = MPI_OP_NULL;

int mpi_shim_init(void) {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (initialized) return MPI_SUCCESS;
    // Open MPI's nonblocking allreduce (libnbc) takes a binomial tree for every in-place call,
    // whatever its size: the whole buffer up to rank 0 and back down, 2 log2(P) x the bytes in a
    // row, where a ring sends 2 (P - 1) / P x the bytes, every link busy at once (2 nodes at
    // 1 Gbit/s: 85 -> 39 ms for 4.2 MiB). The gradients are reduced in place, so ask for the
    // ring, unless the user chose (mpirun --mca, or the variable set).
    setenv("OMPI_MCA_coll_libnbc_iallreduce_algorithm", "1", 0);
    int rc = MPI_Init(NULL, NULL);
    if (rc != MPI_SUCCESS) return rc;
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    return MPI_Op_create(bf16_sum, 1, &bf16_sum_op);
}

int mpi_shim_finalize(void) {
    int initialized = 0, finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    if (!initialized || finalized) return MPI_SUCCESS;
    if (bf16_sum_op != MPI_OP_NULL) MPI_Op_free(&bf16_sum_op);
    return MPI_Finalize();
}

int mpi_shim_rank(void) {
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    return rank;
}

int mpi_shim_size(void) {
    int size = 1;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    return size;
}

int mpi_shim_allreduce_float_sum(float *buffer, size_t count) {
    while (count > 0) {
        int n = count > (size_t)INT_MAX ? INT_MAX : (int)count;
        int rc = MPI_Allreduce(MPI_IN_PLACE, buffer, n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return rc;
        buffer += n;
        count -= (size_t)n;
    }
    return MPI_SUCCESS;
}

int mpi_shim_allreduce_double_sum(double *buffer, size_t count) {
    while (count > 0) {
        int n = count > (size_t)INT_MAX ? INT_MAX : (int)count;
        int rc = MPI_Allreduce(MPI_IN_PLACE, buffer, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return rc;
        buffer += n;
        count -= (size_t)n;
    }
    return MPI_SUCCESS;
}

// Outstanding nonblocking reductions, in the order they were started (one process, one thread).
#define MPI_SHIM_MAX_REQUESTS 4096
static MPI_Request pending[MPI_SHIM_MAX_REQUESTS];
static int pending_count = 0;

// MPI_Iallreduce in place of `count` elements of `size` bytes, in chunks of at most INT_MAX.
static int iallreduce(char *buffer, size_t count, size_t size, MPI_Datatype type, MPI_Op op) {
    while (count > 0) {
        if (pending_count == MPI_SHIM_MAX_REQUESTS) {
            int rc = mpi_shim_wait_all();
            if (rc != MPI_SUCCESS) return rc;
        }
        int n = count > (size_t)INT_MAX ? INT_MAX : (int)count;
        int rc = MPI_Iallreduce(MPI_IN_PLACE, buffer, n, type, op, MPI_COMM_WORLD, &pending[pending_count]);
        if (rc != MPI_SUCCESS) return rc;
        pending_count++;
        buffer += (size_t)n * size;
        count -= (size_t)n;
    }
    return MPI_SUCCESS;
}

int mpi_shim_iallreduce_float_sum(float *buffer, size_t count) {
    return iallreduce((char *)buffer, count, sizeof(float), MPI_FLOAT, MPI_SUM);
}

int mpi_shim_iallreduce_bf16_sum(uint16_t *buffer, size_t count) {
    return iallreduce((char *)buffer, count, sizeof(uint16_t), MPI_UINT16_T, bf16_sum_op);
}

int mpi_shim_test_all(int *done) {
    int flag = 1;
    int rc = pending_count > 0 ? MPI_Testall(pending_count, pending, &flag, MPI_STATUSES_IGNORE) : MPI_SUCCESS;
    if (rc == MPI_SUCCESS && flag) pending_count = 0;
    *done = flag;
    return rc;
}

int mpi_shim_wait_all(void) {
    int rc = pending_count > 0 ? MPI_Waitall(pending_count, pending, MPI_STATUSES_IGNORE) : MPI_SUCCESS;
    pending_count = 0;
    return rc;
}

int mpi_shim_broadcast(void *buffer, size_t bytes, int root) {
    char *p = (char *)buffer;
    while (bytes > 0) {
        int n = bytes > (size_t)INT_MAX ? INT_MAX : (int)bytes;
        int rc = MPI_Bcast(p, n, MPI_BYTE, root, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return rc;
        p += n;
        bytes -= (size_t)n;
    }
    return MPI_SUCCESS;
}

int mpi_shim_barrier(void) { return MPI_Barrier(MPI_COMM_WORLD); }

void mpi_shim_abort(int code) { MPI_Abort(MPI_COMM_WORLD, code); }

void mpi_shim_error_string(int code, char *out, size_t length) {
    char text[MPI_MAX_ERROR_STRING];
    int n = 0;
    if (MPI_Error_string(code, text, &n) != MPI_SUCCESS) n = 0;
    text[n < MPI_MAX_ERROR_STRING ? n : MPI_MAX_ERROR_STRING - 1] = 0;
    if (length > 0) {
        strncpy(out, text, length - 1);
        out[length - 1] = 0;
    }
}

double mpi_shim_wtime(void) { return MPI_Wtime(); }
