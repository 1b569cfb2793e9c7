/// What a `state_dict` entry is, and which flat buffer holds it.
public enum TensorKind: Sendable, Equatable {
    /// A trained parameter: lives in `params` (gradient in `grads`, momentum in `momentum`).
    case parameter
    /// A BN running statistic (`running_mean`, `running_var`): lives in `stats`.
    case statistic
    /// A BN `num_batches_tracked` counter (I64): lives in `counters`.
    case counter
}

/// One `state_dict` entry: PyTorch's name and shape, and where it lives.
public struct TensorEntry: Sendable, Equatable {
    public let name: String
    public let shape: [Int]
    public let kind: TensorKind
    /// Offset into the buffer of its kind (in elements).
    public let offset: Int
    public var count: Int { shape.reduce(1, *) }
}

/// Collects the layout of the flat buffers while layers are created, in `state_dict` order.
public struct StoreLayout {
    public private(set) var entries: [TensorEntry] = []
    public private(set) var parameterCount = 0
    public private(set) var statisticCount = 0
    public private(set) var counterCount = 0

    public init() {}

    public mutating func add(_ name: String, _ shape: [Int], _ kind: TensorKind) -> Int {
        let n = shape.reduce(1, *)
        let offset: Int
        switch kind {
        case .parameter: offset = parameterCount; parameterCount += n
        case .statistic: offset = statisticCount; statisticCount += n
        case .counter: offset = counterCount; counterCount += n
        }
        entries.append(TensorEntry(name: name, shape: shape, kind: kind, offset: offset))
        return offset
    }
}

/// The model's whole state over flat storage: one buffer each for parameters, gradients,
/// momentum, BN running statistics, this step's BN batch statistics, and the BN counters.
/// Layers hold pointers into these buffers; zeroing gradients, the optimizer step, an allreduce,
/// a broadcast or a checkpoint is one pass (or one call) over one buffer.
public final class ParameterStore<T: EngineScalar> {
    public let entries: [TensorEntry]
    public let params: Buffer<T>
    public let grads: Buffer<T>
    public let momentum: Buffer<T>
    /// BN running statistics (`running_mean`, `running_var`), same layout as the entries.
    public let stats: Buffer<T>
    /// This step's BN statistics, summed over the BN groups computed here, in the layout of
    /// `stats`: group means where `running_mean` lives, unbiased group variances where
    /// `running_var` lives. Summed across processes before `updateRunningStatistics`.
    public let batchStats: Buffer<T>
    /// `num_batches_tracked` of every BN layer.
    public var counters: [Int64]
    private let index: [String: Int]

    public init(_ layout: StoreLayout) {
        entries = layout.entries
        params = Buffer<T>(count: layout.parameterCount)
        grads = Buffer<T>(count: layout.parameterCount)
        momentum = Buffer<T>(count: layout.parameterCount)
        stats = Buffer<T>(count: layout.statisticCount)
        batchStats = Buffer<T>(count: layout.statisticCount)
        counters = [Int64](repeating: 0, count: layout.counterCount)
        var index: [String: Int] = [:]
        for (i, e) in layout.entries.enumerated() { index[e.name] = i }
        self.index = index
    }

    public var parameterCount: Int { params.count }

    public func entry(_ name: String) -> TensorEntry? { index[name].map { entries[$0] } }

    /// Pointer to the storage of a float entry (parameter or statistic).
    public func pointer(_ e: TensorEntry) -> UnsafeMutablePointer<T> {
        switch e.kind {
        case .parameter: return params.base + e.offset
        case .statistic: return stats.base + e.offset
        case .counter: preconditionFailure("\(e.name) is an integer counter")
        }
    }

    /// The values of one entry, as floats (counters converted).
    public func values(_ name: String) -> [T]? {
        guard let e = entry(name) else { return nil }
        if e.kind == .counter { return [T(counters[e.offset])] }
        return Array(UnsafeBufferPointer(start: pointer(e), count: e.count))
    }

    /// Gradient of a parameter entry.
    public func gradient(_ name: String) -> [T]? {
        guard let e = entry(name), e.kind == .parameter else { return nil }
        return Array(UnsafeBufferPointer(start: grads.base + e.offset, count: e.count))
    }

    /// Moves the running statistics by this step's batch statistics: r = (1-m) r + m * s / groups,
    /// where `batchStats` holds the sum over `groups` BN groups; every counter grows by one.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func updateRunningStatistics(groups: Int, momentum m: T = 0.1) {
        let r = stats.base, s = batchStats.base
        let inv = 1 / T(groups), keep = 1 - m
        for i in 0..<stats.count { r[i] = keep * r[i] + m * (s[i] * inv) }
        for i in counters.indices { counters[i] += 1 }
    }
}
