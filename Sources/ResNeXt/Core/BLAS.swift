import CBLAS
import RealModule

/// The element type of an engine: Float for training, Double for verification against the
/// float64 PyTorch reference (the same code, instantiated twice). Supplies its BLAS GEMM.
public protocol EngineScalar: BinaryFloatingPoint, Real, Sendable {
    /// C (m x n) = alpha * op(A) (m x k) * op(B) (k x n) + beta * C, row-major.
    static func gemm(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Self,
        a: UnsafePointer<Self>, lda: Int, b: UnsafePointer<Self>, ldb: Int,
        beta: Self, c: UnsafeMutablePointer<Self>, ldc: Int)
    /// How the type is stored in safetensors files.
    static var dtype: SafeTensorsDType { get }
}

@inline(__always) private func trans(_ t: Bool) -> CBLAS_TRANSPOSE { t ? CblasTrans : CblasNoTrans }

extension Float: EngineScalar {
    @inline(__always)
    public static func gemm(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
        a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
        beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        cblas_sgemm(
            CblasRowMajor, trans(transA), trans(transB), Int32(m), Int32(n), Int32(k),
            alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }
    public static var dtype: SafeTensorsDType { .f32 }
}

extension Double: EngineScalar {
    @inline(__always)
    public static func gemm(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Double,
        a: UnsafePointer<Double>, lda: Int, b: UnsafePointer<Double>, ldb: Int,
        beta: Double, c: UnsafeMutablePointer<Double>, ldc: Int
    ) {
        cblas_dgemm(
            CblasRowMajor, trans(transA), trans(transB), Int32(m), Int32(n), Int32(k),
            alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }
    public static var dtype: SafeTensorsDType { .f64 }
}

/// The OpenBLAS thread count last set by `setBLASThreads` (1 until then).
nonisolated(unsafe) public private(set) var blasThreads = 1

/// Sets the number of OpenBLAS threads. Set it before building a model: the convolution
/// workspace is sized for it.
public func setBLASThreads(_ n: Int) {
    blasThreads = n
    openblas_set_num_threads(Int32(n))
}
