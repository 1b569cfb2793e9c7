import AllocCounter
import ResNeXt
import ResNeXtTrain
import Testing

/// The steady-state training step allocates nothing: every activation, workspace and buffer is
/// planned when the model is built. Counted by interposing malloc/calloc/realloc/posix_memalign/
/// aligned_alloc on the calling thread (Tests/AllocCounter). With one OpenBLAS thread, as the
/// tests and the launch scripts' one-thread ranks run. (OpenBLAS's own threaded GEMM, with more
/// than one thread, allocates inside each call that it splits: 15 calls in this model's forward.)
@Suite struct AllocationTests {
    /// Heap allocations on this thread in each of steps 2-4 of `step` on 8 random images: the
    /// first step may warm up BLAS and the runtime; the next ones must not allocate.
    static func allocationsPerStep(_ step: (UnsafePointer<Float>, UnsafePointer<Int32>) -> Void) -> [Int] {
        let images = randomArray(8 * 3072, seed: 2)
        let labels: [Int32] = [0, 1, 2, 3, 4, 5, 6, 7]
        var counts: [Int] = []
        images.withUnsafeBufferPointer { img in
            labels.withUnsafeBufferPointer { lab in
                for i in 0..<4 {
                    alloc_counter_start()
                    step(img.baseAddress!, lab.baseAddress!)
                    let n = alloc_counter_stop()
                    if i > 0 { counts.append(n) }
                }
            }
        }
        return counts
    }

    /// Base width 4 (the direct and row-lowered 3x3 paths, 2 channels per group) and 32 (32
    /// channels per group: Winograd for stage 1's 3x3 layer).
    @Test(arguments: [4, 32]) func trainingStepAllocatesNothing(baseChannels: Int) throws {
        setBLASThreads(1)
        let net = try ResNeXt<Float>(ResNeXtConfig(depth: 11, cardinality: 2, baseChannels: baseChannels), maxBatch: 8)
        net.initialize(seed: 1)
        let sgd = SGD(learningRate: 0.01)
        let counts = Self.allocationsPerStep { img, lab in
            net.trainStep(images: img, labels: lab, n: 8, bnGroup: 4, optimizer: sgd)
            net.forward(img, n: 8, mode: .inference)
        }
        #expect(counts == [0, 0, 0], "allocations per step after warm-up: \(counts)")
        // the counter itself works
        alloc_counter_start()
        let array = [Int](repeating: 1, count: 1000)
        let n = alloc_counter_stop()
        #expect(n >= 1 && array.count == 1000)
    }

    /// The data-parallel step as `train` and `bench` run it (bucketed reduction, a process group
    /// of one) allocates nothing either, with float32 or bfloat16 gradients on the wire.
    @Test(arguments: [0, 300], GradientPrecision.allCases)
    func dataParallelStepAllocatesNothing(bucketFloats: Int, precision: GradientPrecision) throws {
        setBLASThreads(1)
        let net = try ResNeXt<Float>(ResNeXtConfig(depth: 11, cardinality: 2, baseChannels: 4), maxBatch: 8)
        net.initialize(seed: 1)
        let reducer = GradientReducer(comm: SingleProcess(), store: net.store, bucketFloats: bucketFloats, precision: precision)
        let sgd = SGD(learningRate: 0.01)
        let counts = Self.allocationsPerStep { img, lab in
            DataParallel.step(net, images: img, labels: lab, n: 8, globalBatch: 8, bnGroup: 4, optimizer: sgd, reducer: reducer)
        }
        #expect(counts == [0, 0, 0], "\(precision): allocations per step after warm-up: \(counts)")
    }
}
