import ResNeXt
import ResNeXtTrain

#if canImport(Glibc)
    import Glibc
#endif

/// A process group whose nonblocking sums also cross a simulated network link of `bytesPerSecond`
/// (`bench --simulate-network`): each started sum is "in flight" for bytes / rate seconds on one
/// link (sums queue on it), counted from when it is started while the CPU goes on computing, as a
/// NIC's transfer would; `waitAll` also waits until the link is idle. It shows what the overlap
/// of the bucketed allreduce with the backward pass buys on a slow network, on a machine whose
/// ranks share memory. Every other call goes to `inner` as it is.
public final class SimulatedLink: Communicator {
    public let inner: Communicator
    public let bytesPerSecond: Double
    private var idleAt = 0.0

    public init(_ inner: Communicator, bytesPerSecond: Double) {
        self.inner = inner
        self.bytesPerSecond = bytesPerSecond
    }

    public var rank: Int { inner.rank }
    public var size: Int { inner.size }

    public func startAllreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) {
        inner.startAllreduceSum(buffer, count: count)
        occupy(bytes: count * 4)
    }

    public func startAllreduceSumBFloat16(_ buffer: UnsafeMutablePointer<UInt16>, count: Int) {
        inner.startAllreduceSumBFloat16(buffer, count: count)
        occupy(bytes: count * 2)
    }

    private func occupy(bytes: Int) { idleAt = max(Profile.now(), idleAt) + Double(bytes) / bytesPerSecond }

    public func waitAll() {
        inner.waitAll()
        let wait = idleAt - Profile.now()
        if wait > 0 { usleep(UInt32(min(wait, 3600) * 1e6)) }
    }

    public func progress() -> Bool { inner.progress() }
    public func allreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) { inner.allreduceSum(buffer, count: count) }
    public func allreduceSum(_ values: inout [Double]) { inner.allreduceSum(&values) }
    public func broadcast(_ buffer: UnsafeMutableRawPointer, bytes: Int, root: Int) { inner.broadcast(buffer, bytes: bytes, root: root) }
    public func barrier() { inner.barrier() }
    public func abort(_ message: String) -> Never { inner.abort(message) }
    public func finish() { inner.finish() }
}
