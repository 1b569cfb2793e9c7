import ResNeXt

/// Sums the gradients over the ranks in buckets while the backward pass still runs, as
/// PyTorch DDP's `bucket_cap_mb`. The gradients are one flat buffer in `state_dict` order and the
/// backward pass finishes them from the end towards the start, so a bucket is a contiguous range:
/// once at least `bucketFloats` finished floats wait, their allreduce is started (nonblocking) and
/// the backward pass goes on; the rest is started when the backward pass ends, then all are awaited.
/// Every rank runs the same model, so every rank starts the same buckets in the same order.
/// `bucketFloats` 0 reduces all gradients in one allreduce after the backward pass (no overlap).
public final class GradientReducer {
    public let comm: Communicator
    public let bucketFloats: Int
    let grads: UnsafeMutablePointer<Float>
    let count: Int
    var pendingFrom = 0
    /// Buckets started in the last step.
    public private(set) var buckets = 0

    public init(comm: Communicator, store: ParameterStore<Float>, bucketFloats: Int) {
        self.comm = comm
        self.bucketFloats = max(0, bucketFloats)
        grads = store.grads.base
        count = store.grads.count
    }

    /// Floats per bucket for a bucket size in MiB (as `bucket_cap_mb`); 0 MiB: no buckets.
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
        comm.startAllreduceSum(grads + range.lowerBound, count: range.count)
        buckets += 1
    }

    /// Starts what is left and waits for every bucket.
    func finish() {
        if pendingFrom > 0 { start(0..<pendingFrom) }
        pendingFrom = 0
        comm.waitAll()
    }
}
