import Foundation
import ResNeXt
import ResNeXtBench
import ResNeXtMPI
import ResNeXtTrain
import Testing

/// A process group of one that records every nonblocking reduction it is asked to start: where,
/// how many floats, and the floats themselves at that moment.
final class RecordingCommunicator: Communicator {
    var started: [(offset: Int, values: [Float])] = []
    var base: UnsafeMutablePointer<Float>?
    var waits = 0
    var rank: Int { 0 }
    var size: Int { 1 }
    func allreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) {}
    func allreduceSum(_ values: inout [Double]) {}
    func startAllreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) {
        started.append((buffer - base!, Array(UnsafeBufferPointer(start: buffer, count: count))))
    }
    func progress() -> Bool { true }
    func waitAll() { waits += 1 }
    func broadcast(_ buffer: UnsafeMutableRawPointer, bytes: Int, root: Int) {}
    func barrier() {}
    func finish() {}
    func abort(_ message: String) -> Never { fatalError(message) }
}

@Suite struct BucketTests {
    /// Buckets tile the gradient buffer from its end to its start, each at least the bucket size
    /// (but the last), and each is started only when its gradients are final: what the
    /// communicator saw at start equals the gradients after the whole backward pass. Through
    /// bench's `SimulatedLink` (at a rate that adds no wait) the communicator sees the same.
    @Test(arguments: [0, 300, 5_000, 1 << 30], [false, true])
    func bucketsTileTheGradientsAndStartWhenFinal(bucketFloats: Int, simulatedLink: Bool) throws {
        let net = try ResNeXt<Float>(ResNeXtConfig(depth: 11, cardinality: 2, baseChannels: 4), maxBatch: 4)
        net.initialize(seed: 5)
        let comm = RecordingCommunicator()
        comm.base = net.store.grads.base
        let link: Communicator = simulatedLink ? SimulatedLink(comm, bytesPerSecond: 1e15) : comm
        let reducer = GradientReducer(comm: link, store: net.store, bucketFloats: bucketFloats)
        var rng = SplitMix64(seed: 9)
        let images = (0..<(4 * 3 * 32 * 32)).map { _ in Float(rng.nextNormal()) }
        let labels: [Int32] = [1, 7, 3, 0]
        for step in 1...2 {
            comm.started = []
            images.withUnsafeBufferPointer { img in
                labels.withUnsafeBufferPointer { lab in
                    _ = DataParallel.step(
                        net, images: img.baseAddress!, labels: lab.baseAddress!, n: 4, globalBatch: 4,
                        bnGroup: 2, optimizer: SGD(learningRate: 0.1), reducer: reducer)
                }
            }
            let count = net.store.grads.count
            var end = count
            for (i, bucket) in comm.started.enumerated() {
                #expect(bucket.offset + bucket.values.count == end, "step \(step): bucket \(i) does not end where the previous one starts")
                if i < comm.started.count - 1 { #expect(bucket.values.count >= bucketFloats) }
                let final = Array(UnsafeBufferPointer(start: net.store.grads.base + bucket.offset, count: bucket.values.count))
                #expect(final == bucket.values, "step \(step): bucket \(i) at \(bucket.offset) was started before its gradients were final")
                end = bucket.offset
            }
            #expect(end == 0, "step \(step): the buckets leave \(end) floats unreduced")
            #expect(reducer.buckets == comm.started.count)
            if bucketFloats == 0 || bucketFloats >= count { #expect(comm.started.count == 1) }
            if bucketFloats == 300 { #expect(comm.started.count > 3) }
        }
        #expect(comm.waits == 2)
    }

    /// Started without a launcher, a process is a group of one and does not initialise MPI.
    @Test func withoutALauncherAProcessIsAGroupOfOne() {
        #expect(!launchedAsRank)
        let comm = makeCommunicator()
        #expect(comm is SingleProcess && comm.rank == 0 && comm.size == 1)
    }
}
