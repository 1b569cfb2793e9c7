import ResNeXt

/// What the gradients cross the network as (`--grad-dtype`). bf16 halves the bytes, as PyTorch
/// DDP's `bf16_compress_hook` and Horovod's `Compression.fp16` do: each bucket is rounded to
/// bfloat16, summed in bfloat16 over the ranks, and widened back before the update, which stays
/// in float32. It rounds in a single process too, so a run's arithmetic does not depend on P.
public enum GradientPrecision: String, CaseIterable, Codable, Sendable {
    case fp32, bf16

    public var bytes: Int { self == .fp32 ? 4 : 2 }
}

/// Sums the gradients over the ranks in buckets while the backward pass still runs, as
/// PyTorch DDP's `bucket_cap_mb`. The gradients are one flat buffer in `state_dict` order and the
/// backward pass finishes them from the end towards the start, so a bucket is a contiguous range:
/// once at least `bucketFloats` finished floats wait, their allreduce is started (nonblocking) and
/// the backward pass goes on; the rest is started when the backward pass ends, then all are awaited.
/// Every rank runs the same model, so every rank starts the same buckets in the same order.
/// `bucketFloats` 0 reduces all gradients in one allreduce after the backward pass (no overlap).
/// With `.bf16` a bucket is its gradients' count of bfloat16 values (half the bytes), rounded
/// into a buffer of the reducer's own when the bucket starts.
public final class GradientReducer {
    public let comm: Communicator
    public let bucketFloats: Int
    public let precision: GradientPrecision
    let grads: UnsafeMutablePointer<Float>
    let count: Int
    /// The gradients as bfloat16 while they cross the network (`.bf16` only).
    let wire: UnsafeMutablePointer<UInt16>?
    var pendingFrom = 0
    /// Buckets started in the last step.
    public private(set) var buckets = 0

    public init(comm: Communicator, store: ParameterStore<Float>, bucketFloats: Int, precision: GradientPrecision = .fp32) {
        self.comm = comm
        self.bucketFloats = max(0, bucketFloats)
        self.precision = precision
        grads = store.grads.base
        count = store.grads.count
        wire = precision == .bf16 ? .allocate(capacity: max(count, 1)) : nil
    }

    deinit { wire?.deallocate() }

    /// Gradients per bucket for a bucket size in MiB (as `bucket_cap_mb`, of float32 gradients
    /// whatever crosses the network); 0 MiB: no buckets.
    public static func floats(mebibytes: Double) -> Int { Int((mebibytes * 1_048_576 / 4).rounded()) }

    func begin() {
        pendingFrom = count
        buckets = 0
    }

    /// The gradients at offset..<count are final.
    func ready(_ offset: Int) {
        guard bucketFloats > 0 else { return }
        if pendingFrom - offset >= bucketFloats {
            start(offset..<pendingFrom)
            pendingFrom = offset
        }
        _ = comm.progress()
    }

    func start(_ range: Range<Int>) {
        if let wire {
            let half = wire + range.lowerBound
            roundToBFloat16(grads + range.lowerBound, half, count: range.count)
            comm.startAllreduceSumBFloat16(half, count: range.count)
        } else {
            comm.startAllreduceSum(grads + range.lowerBound, count: range.count)
        }
        buckets += 1
    }

    /// Starts what is left and waits for every bucket.
    func finish() {
        if pendingFrom > 0 { start(0..<pendingFrom) }
        pendingFrom = 0
        comm.waitAll()
        if let wire { widenBFloat16(wire, grads, count: count) }
    }
}
