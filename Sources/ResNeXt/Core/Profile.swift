#if canImport(Glibc)
    import Glibc
#endif

/// Kinds of work in a training step, for `resnext-ddp bench --profile`.
public enum WorkKind: Int, CaseIterable, Sendable {
    case gemm, im2col, batchNorm, pooling, loss, optimizer, communication, imbalance, other

    public var label: String {
        switch self {
        case .gemm: "convolutions (GEMM, direct 3x3), linear"
        case .im2col: "im2col / col2im"
        case .batchNorm: "batch norm (with the ReLUs and residual adds fused in)"
        case .pooling: "pooling, layout"
        case .loss: "softmax cross-entropy"
        case .optimizer: "optimizer (SGD)"
        case .communication: "allreduce / broadcast"
        case .imbalance: "waiting for the slower rank (bench's barrier before the allreduce)"
        case .other: "other"
        }
    }
}

/// Wall time per kind of work, accumulated while `enabled`. Off by default; when off, timing
/// costs one branch per call site. Single-threaded use (one engine per process).
public enum Profile {
    nonisolated(unsafe) public static var enabled = false
    /// Seconds per `WorkKind`, by raw value: a buffer allocated once, not an array, so that adding
    /// to it never copies (an array shared for a moment with a reader would, and allocate in the
    /// middle of a step).
    nonisolated(unsafe) public static let seconds: UnsafeMutablePointer<Double> = {
        let p = UnsafeMutablePointer<Double>.allocate(capacity: WorkKind.allCases.count)
        p.initialize(repeating: 0, count: WorkKind.allCases.count)
        return p
    }()
    /// Whether `layerSeconds` is kept too (with `enabled`): `bench --layers`, one model per process.
    nonisolated(unsafe) public static var byLayer = false
    /// Wall time of each convolution layer's forward and backward passes, by layer name.
    nonisolated(unsafe) public static var layerSeconds: [String: Double] = [:]

    @inline(__always) public static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }

    /// Runs `body`, adding its wall time to `kind` when profiling.
    @inline(__always) public static func measure<R>(_ kind: WorkKind, _ body: () throws -> R) rethrows -> R {
        if !enabled { return try body() }
        let t0 = now()
        defer { seconds[kind.rawValue] += now() - t0 }
        return try body()
    }

    public static func reset() {
        seconds.update(repeating: 0, count: WorkKind.allCases.count)
        layerSeconds.removeAll(keepingCapacity: true)
    }
}
