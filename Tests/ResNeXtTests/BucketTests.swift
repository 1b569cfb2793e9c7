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
    /// bfloat16 buckets: where they start (in the reducer's own buffer) and their bits then.
    var startedBFloat16: [(start: UnsafeMutablePointer<UInt16>, bits: [UInt16])] = []
    func startAllreduceSumBFloat16(_ buffer: UnsafeMutablePointer<UInt16>, count: Int) {
        startedBFloat16.append((buffer, Array(UnsafeBufferPointer(start: buffer, count: count))))
    }
    func progress() -> Bool { true }
    func waitAll() { waits += 1 }
    func broadcast(_ buffer: UnsafeMutableRawPointer, bytes: Int, root: Int) {}
    func barrier() {}
    func finish() {}
    func abort(_ message: String) -> Never { fatalError(message) }
}

@Suite struct BucketTests {
    /// The model both bucket tests step (ResNeXt-11 2x4d, seeded), and its batch: four random
    /// images in two BN groups.
    static func net() throws -> ResNeXt<Float> {
        let net = try ResNeXt<Float>(ResNeXtConfig(depth: 11, cardinality: 2, baseChannels: 4), maxBatch: 4)
        net.initialize(seed: 5)
        return net
    }

    static let images: [Float] = {
        var rng = SplitMix64(seed: 9)
        return (0..<(4 * 3 * 32 * 32)).map { _ in Float(rng.nextNormal()) }
    }()

    static func step(_ net: ResNeXt<Float>, _ reducer: GradientReducer) {
        let labels: [Int32] = [1, 7, 3, 0]
        images.withUnsafeBufferPointer { img in
            labels.withUnsafeBufferPointer { lab in
                _ = DataParallel.step(
                    net, images: img.baseAddress!, labels: lab.baseAddress!, n: 4, globalBatch: 4,
                    bnGroup: 2, optimizer: SGD(learningRate: 0.1), reducer: reducer)
            }
        }
    }

    /// Buckets tile the gradient buffer from its end to its start, each at least the bucket size
    /// (but the last), and each is started only when its gradients are final: what the
    /// communicator saw at start equals the gradients after the whole backward pass. Through
    /// bench's `SimulatedLink` (at a rate that adds no wait) the communicator sees the same.
    @Test(arguments: [0, 300, 5_000, 1 << 30], [false, true])
    func bucketsTileTheGradientsAndStartWhenFinal(bucketFloats: Int, simulatedLink: Bool) throws {
        let net = try Self.net()
        let comm = RecordingCommunicator()
        comm.base = net.store.grads.base
        let link: Communicator = simulatedLink ? SimulatedLink(comm, bytesPerSecond: 1e15) : comm
        let reducer = GradientReducer(comm: link, store: net.store, bucketFloats: bucketFloats)
        for step in 1...2 {
            comm.started = []
            Self.step(net, reducer)
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

    /// With `--grad-dtype bf16` the buckets tile the gradients as with float32 and each carries
    /// exactly the float32 run's final gradients rounded to bfloat16 (ties to even), so each was
    /// started when final; after the step the gradients are those values widened, in one process
    /// too (the update sees what P ranks would send).
    @Test(arguments: [0, 300]) func bfloat16BucketsCarryTheFinalGradientsRounded(bucketFloats: Int) throws {
        func step(_ precision: GradientPrecision) throws -> (grads: [Float], comm: RecordingCommunicator, reducer: GradientReducer) {
            let net = try Self.net()
            let comm = RecordingCommunicator()
            comm.base = net.store.grads.base
            let reducer = GradientReducer(comm: comm, store: net.store, bucketFloats: bucketFloats, precision: precision)
            Self.step(net, reducer)
            return (net.store.grads.toArray(), comm, reducer)
        }
        let exact = try step(.fp32).grads
        let (grads, comm, reducer) = try step(.bf16)
        #expect(comm.started.isEmpty && reducer.buckets == comm.startedBFloat16.count)
        // contiguous from the end of the reducer's buffer to its start, covering every gradient
        let buckets = comm.startedBFloat16
        #expect(buckets.map(\.bits.count).reduce(0, +) == exact.count, "the buckets do not cover the gradients once")
        for i in buckets.indices.dropFirst() {
            #expect(buckets[i].start + buckets[i].bits.count == buckets[i - 1].start, "bucket \(i) does not end where bucket \(i - 1) starts")
        }
        var end = exact.count
        for (i, bucket) in buckets.enumerated() {
            let offset = end - bucket.bits.count
            let want = exact[offset..<end].map(referenceBFloat16)
            #expect(bucket.bits == want, "bucket \(i) at \(offset) is not the final gradients rounded to bfloat16")
            end = offset
        }
        if bucketFloats == 300 { #expect(comm.startedBFloat16.count > 3) }
        #expect(grads == exact.map { Float(bitPattern: UInt32(referenceBFloat16($0)) << 16) })
        #expect(grads != exact)
    }

    /// Started without a launcher, a process is a group of one and does not initialise MPI.
    @Test func withoutALauncherAProcessIsAGroupOfOne() {
        #expect(!launchedAsRank)
        let comm = makeCommunicator()
        #expect(comm is SingleProcess && comm.rank == 0 && comm.size == 1)
    }
}
