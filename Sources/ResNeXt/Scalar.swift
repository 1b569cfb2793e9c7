import CBLAS
import Foundation
import RealModule

/// The element type of an engine: Float for training, Double for verification against the
/// float64 PyTorch reference (the same code, instantiated twice). Supplies its BLAS GEMM.
public protocol EngineScalar: BinaryFloatingPoint, Real, Sendable {
    /// C (m x n) = alpha * op(A) (m x k) * op(B) (k x n) + beta * C, row-major.
    static func gemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Self,
                     a: UnsafePointer<Self>, lda: Int, b: UnsafePointer<Self>, ldb: Int,
                     beta: Self, c: UnsafeMutablePointer<Self>, ldc: Int)
    /// How the type is stored in safetensors files.
    static var dtype: SafeTensorsDType { get }
}

@inline(__always) private func trans(_ t: Bool) -> CBLAS_TRANSPOSE { t ? CblasTrans : CblasNoTrans }

extension Float: EngineScalar {
    @inline(__always)
    public static func gemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                            a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                            beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        cblas_sgemm(CblasRowMajor, trans(transA), trans(transB), Int32(m), Int32(n), Int32(k),
                    alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }
    public static var dtype: SafeTensorsDType { .f32 }
}

extension Double: EngineScalar {
    @inline(__always)
    public static func gemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Double,
                            a: UnsafePointer<Double>, lda: Int, b: UnsafePointer<Double>, ldb: Int,
                            beta: Double, c: UnsafeMutablePointer<Double>, ldc: Int) {
        cblas_dgemm(CblasRowMajor, trans(transA), trans(transB), Int32(m), Int32(n), Int32(k),
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

/// The kernel family OpenBLAS chose for this processor ("Haswell", "Zen", "SkylakeX", ...;
/// `OPENBLAS_CORETYPE` overrides it).
public var blasCoreName: String {
    openblas_get_corename().map { String(cString: $0) } ?? "unknown"
}

/// Whether OpenBLAS runs 512-bit kernels here: on such a processor its products can beat the
/// engine's own 256-bit kernels (`ConvolutionTuner`, docs/performance.md).
public var blasUsesAVX512: Bool {
    ["SkylakeX", "Cooperlake", "SapphireRapids"].contains(blasCoreName)
}

/// The start-up line of `train` and `bench` where OpenBLAS runs 512-bit kernels and the
/// convolution paths are not tuned; nil elsewhere.
public var untunedAVX512Hint: String? {
    blasUsesAVX512 ? "OpenBLAS runs AVX-512 kernels here (\(blasCoreName)), which can beat the engine's own 256-bit ones: --tune-convolutions times both and keeps the faster (docs/performance.md)" : nil
}

/// OpenBLAS's kernel families that use FMA (256- or 512-bit): the ones a processor with AVX2
/// and FMA should get.
let fmaKernelFamilies: Set<String> = ["Haswell", "Zen", "SkylakeX", "Cooperlake", "SapphireRapids"]

/// A warning when OpenBLAS picked kernels without FMA on a processor that has AVX2 and FMA
/// (`cpuFlags`, as /proc/cpuinfo lists them), which happens in virtual machines that hide
/// the processor's model: there OpenBLAS ran 31 GFLOP/s per core against 155-163 with
/// `OPENBLAS_CORETYPE=SkylakeX` (docs/performance.md). nil when its choice is fine or the flags
/// are unknown.
public func blasKernelWarning(coreName: String, cpuFlags: Set<String>, vendor: String) -> String? {
    guard cpuFlags.contains("avx2") && cpuFlags.contains("fma") && !fmaKernelFamilies.contains(coreName) else { return nil }
    let suggested = cpuFlags.contains("avx512f") && vendor == "GenuineIntel" ? "SkylakeX" : vendor == "AuthenticAMD" ? "Zen" : "Haswell"
    return "warning: OpenBLAS picked its \(coreName) kernels, but this processor has AVX2 and FMA\(cpuFlags.contains("avx512f") ? " and AVX-512" : ""): matrix products may run several times slower; set OPENBLAS_CORETYPE=\(suggested) (with mpirun: -x OPENBLAS_CORETYPE=\(suggested))"
}

/// `blasKernelWarning` for this machine (from /proc/cpuinfo's first processor).
public var blasKernelWarningHere: String? {
    guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return nil }
    var flags: Set<String> = [], vendor = ""
    for line in text.split(separator: "\n") {
        let parts = line.split(separator: ":", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
        guard parts.count == 2 else { continue }
        if parts[0] == "vendor_id" && vendor.isEmpty { vendor = parts[1] }
        if parts[0] == "flags" { flags = Set(parts[1].split(separator: " ").map(String.init)); break }
    }
    return blasKernelWarning(coreName: blasCoreName, cpuFlags: flags, vendor: vendor)
}
