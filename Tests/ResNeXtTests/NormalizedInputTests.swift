import ResNeXt
import Testing

/// A 3x3 convolution that reads a batch norm's output from the norm's input (`NormalizedInput`)
/// computes exactly what it computes from the stored output: bit for bit, on every path that
/// supports it, and so does the whole model, in training and in evaluation.
@Suite struct NormalizedInputTests {
    static func bits(_ a: [Float]) -> [UInt32] { a.map(\.bitPattern) }

    /// BN (training groups or running statistics) with ReLU, then the convolution: once from the
    /// stored output, once reading it from the BN's input. y, dx and dW must agree bitwise.
    @Test(arguments: [
        // stride, groups, h, w, direct 3x3, direct weight gradient, Winograd
        (1, 2, 16, 16, true, true, false),  // direct forward and weight gradient (29-4x16d, stage 1)
        (1, 2, 8, 8, true, false, false),  // direct forward, row-lowered weight gradient (stage 3)
        (1, 1, 16, 16, false, false, false),  // rows for both
        (2, 2, 32, 32, false, false, false),  // stride 2 on rows, 16 output columns (stage 2's first block)
        (2, 2, 16, 16, false, false, false),  // ... 8 output columns (stage 3's)
        (1, 2, 16, 16, true, true, true),  // Winograd forward (its input transform reads through the norm)
    ]) func convolutionReadsTheNormalizedInput(shape: (Int, Int, Int, Int, Bool, Bool, Bool)) throws {
        let (stride, groups, h, w, direct, directWeights, winograd) = shape
        let (c, n, group) = (8, 4, 2)
        setBLASThreads(1)  // OpenBLAS's result depends on its thread count
        var layout = StoreLayout()
        let bn = BatchNorm<Float>("bn", c, maxGroups: n / group, layout: &layout)
        let conv = Conv2d<Float>("conv", c, c, kernel: 3, stride: stride, padding: 1, groups: groups, layout: &layout)
        let store = ParameterStore<Float>(layout)
        bn.bind(store)
        conv.bind(store)
        conv.path.direct3x3 = direct
        conv.path.directWeightGradient = directWeights
        conv.path.winograd = winograd
        #expect(conv.readsNormalizedInput(h: h, w: w), "\(shape)")
        // weights, BN weight around 1 and bias around 0 (parameter order: bn.weight, bn.bias, conv.weight)
        let params = randomArray(store.params.count, seed: 3, scale: 0.5)
        for i in 0..<store.params.count { store.params.base[i] = params[i] + (i < c ? 1 : 0) }
        let (p, q) = conv.outputSize(h, w)
        let x = Buffer<Float>(count: c * n * h * w), stored = Buffer<Float>(count: c * n * h * w)
        x.copy(from: randomArray(x.count, seed: 4, scale: 2, offset: 0.3))
        let dy = Buffer<Float>(count: c * n * p * q)
        dy.copy(from: randomArray(dy.count, seed: 5))
        let col = Buffer<Float>(count: conv.columnCount(n: n, h: h, w: w))
        let y = Buffer<Float>(count: dy.count), dx = Buffer<Float>(count: x.count)
        let weights = (2 * c)..<(2 * c + conv.weightCount)

        func run(training: Bool, onRead: Bool) -> (y: [Float], dx: [Float], dw: [Float]) {
            store.grads.zero()
            var normalize: NormalizedInput? = nil
            if onRead {
                if training { bn.statisticsTraining(x: x.base, n: n, hw: h * w, group: group) } else { bn.prepareInference() }
                normalize = bn.normalizedInput(n: n, group: training ? group : nil)
            } else if training {
                bn.forwardTraining(x: x.base, y: stored.base, n: n, hw: h * w, group: group, relu: true)
            } else {
                bn.forwardInference(x: x.base, y: stored.base, n: n, hw: h * w, relu: true)
            }
            let input = onRead ? x.base : stored.base
            conv.forward(x: input, y: y.base, n: n, h: h, w: w, col: col.base, normalize: normalize)
            conv.backward(x: input, dy: dy.base, dx: dx.base, n: n, h: h, w: w, col: col.base, normalize: normalize)
            return (y.toArray(), dx.toArray(), Array(store.grads.toArray()[weights]))
        }
        for training in [true, false] {
            let a = run(training: training, onRead: false)
            // the ReLU both zeroes and passes values here
            #expect(stored.toArray().contains { $0 == 0 } && stored.toArray().contains { $0 > 0 })
            let b = run(training: training, onRead: true)
            let label = "\(shape), training \(training)"
            #expect(Self.bits(a.y) == Self.bits(b.y), "forward \(label)")
            #expect(Self.bits(a.dw) == Self.bits(b.dw), "dW \(label)")
            #expect(Self.bits(a.dx) == Self.bits(b.dx), "dx \(label)")
            #expect(a.y.contains { $0 != 0 } && a.dw.contains { $0 != 0 })
        }
        // the running statistics the training BN added up are the same too
        store.batchStats.zero()
        bn.forwardTraining(x: x.base, y: stored.base, n: n, hw: h * w, group: group, relu: true)
        let full = store.batchStats.toArray()
        store.batchStats.zero()
        bn.statisticsTraining(x: x.base, n: n, hw: h * w, group: group)
        #expect(Self.bits(full) == Self.bits(store.batchStats.toArray()) && full.contains { $0 != 0 })
    }

    /// Where a path would copy its input some other way, the layer says it cannot: the plane
    /// lowering, a width that is not a multiple of 8, 1x1 layers, float64.
    @Test func pathsWithoutRowCopiesDecline() throws {
        var layout = StoreLayout()
        let conv = Conv2d<Float>("c", 8, 8, kernel: 3, padding: 1, groups: 2, layout: &layout)
        conv.path.direct3x3 = false
        conv.path.rowLowering = false
        #expect(!conv.readsNormalizedInput(h: 16, w: 16))
        conv.path.rowLowering = true
        #expect(conv.readsNormalizedInput(h: 16, w: 16))
        #expect(!conv.readsNormalizedInput(h: 12, w: 12))
        let pointwise = Conv2d<Float>("p", 8, 8, kernel: 1, layout: &layout)
        #expect(!pointwise.readsNormalizedInput(h: 16, w: 16))
        var layout64 = StoreLayout()
        let conv64 = Conv2d<Double>("d", 8, 8, kernel: 3, padding: 1, groups: 2, layout: &layout64)
        #expect(!conv64.readsNormalizedInput(h: 16, w: 16))
    }

    /// Two training steps and an evaluation forward of a whole model, with bn1's output stored and
    /// read on the fly: the same logits, gradients, parameters and running statistics, bit for bit,
    /// and the on-the-fly model holds no copy of bn1's output.
    @Test func modelIsTheSameEitherWay() throws {
        setBLASThreads(1)
        let config = ResNeXtConfig(depth: 29, cardinality: 2, baseChannels: 4)
        let images = randomArray(8 * 3072, seed: 6), labels: [Int32] = [0, 1, 2, 3, 4, 5, 6, 7]
        var results: [(logits: [Float], params: [Float], grads: [Float], stats: [Float], bytes: Int)] = []
        var onRead = 0
        for read in [false, true] {
            let net = try ResNeXt<Float>(config, maxBatch: 8)
            net.initialize(seed: 7)
            net.readsBN1OnTheFly = read
            if read {
                onRead =
                    net.convolutionInputs.filter { $0.conv.kernel == 3 && $0.conv.groups > 1 && $0.conv.readsNormalizedInput(h: $0.h, w: $0.w) }.count
            }
            let sgd = SGD(learningRate: 0.05)
            images.withUnsafeBufferPointer { img in
                labels.withUnsafeBufferPointer { lab in
                    for _ in 0..<2 { _ = net.trainStep(images: img.baseAddress!, labels: lab.baseAddress!, n: 8, bnGroup: 4, optimizer: sgd) }
                }
            }
            let logits = images.withUnsafeBufferPointer {
                Array(UnsafeBufferPointer(start: net.forward($0.baseAddress!, n: 8, mode: .inference), count: 80))
            }
            results.append((logits, net.store.params.toArray(), net.store.grads.toArray(), net.store.stats.toArray(), net.activationBytes))
        }
        let (stored, read) = (results[0], results[1])
        #expect(onRead == 9, "every block's 3x3 convolution reads bn1's output on the fly")
        #expect(Self.bits(stored.logits) == Self.bits(read.logits), "evaluation logits")
        #expect(Self.bits(stored.grads) == Self.bits(read.grads), "gradients")
        #expect(Self.bits(stored.params) == Self.bits(read.params), "parameters")
        #expect(Self.bits(stored.stats) == Self.bits(read.stats), "running statistics")
        #expect(stored.grads.contains { $0 != 0 })
        // 9 blocks' bn1 outputs (8 images) are not held: 8 x (3 x 8 x 32^2 + 16 x 32^2 + 2 x 16 x 16^2 + 32 x 16^2 + 2 x 32 x 8^2) floats
        #expect(
            stored.bytes - read.bytes == 8 * (3 * 8 * 1024 + 16 * 1024 + 2 * 16 * 256 + 32 * 256 + 2 * 32 * 64) * 4,
            "\(stored.bytes) - \(read.bytes)")
    }
}
