import ResNeXt
import Testing

/// Every entry of ../shared/fixtures/layers.safetensors, at the README's tolerance (relative L2 1e-5).
@Suite struct LayerFixtureTests {
    static let tolerance = 1e-5

    /// Runs a convolution fixture (`prefix`) through our Conv2d.
    func checkConvolution<T: EngineScalar>(_ prefix: String, kernel: Int, stride: Int, padding: Int, groups: Int, _: T.Type) throws {
        let f = try Fixtures.file("layers.safetensors")
        let xs = try f.info(prefix + ".x").shape, ws = try f.info(prefix + ".w").shape
        let (n, c, h, w) = (xs[0], xs[1], xs[2], xs[3])
        var layout = StoreLayout()
        let conv = Conv2d<T>("conv", c, ws[0], kernel: kernel, stride: stride, padding: padding, groups: groups, layout: &layout)
        let store = ParameterStore<T>(layout)
        conv.bind(store)
        store.params.copy(from: try f.values(prefix + ".w"))
        let (p, q) = conv.outputSize(h, w)
        let k = ws[0]
        let x = Buffer<T>(count: n * c * h * w), y = Buffer<T>(count: n * k * p * q)
        let dy = Buffer<T>(count: n * k * p * q), dx = Buffer<T>(count: n * c * h * w)
        let col = Buffer<T>(count: max(1, conv.columnCount(n: n, h: h, w: w)))
        x.copy(from: nchwToCnhw(try f.values(prefix + ".x"), n: n, c: c, hw: h * w))
        dy.copy(from: nchwToCnhw(try f.values(prefix + ".dy"), n: n, c: k, hw: p * q))
        conv.forward(x: x.base, y: y.base, n: n, h: h, w: w, col: col.base)
        #expect(relativeError(cnhwToNchw(y.toArray(), n: n, c: k, hw: p * q), try f.doubles(prefix + ".y")) < Self.tolerance)
        conv.backward(x: x.base, dy: dy.base, dx: dx.base, n: n, h: h, w: w, col: col.base)
        #expect(relativeError(cnhwToNchw(dx.toArray(), n: n, c: c, hw: h * w), try f.doubles(prefix + ".dx")) < Self.tolerance)
        #expect(relativeError(store.grads.toArray(), try f.doubles(prefix + ".dw")) < Self.tolerance)
    }

    @Test func groupedConvolutionStride2() throws {
        try checkConvolution("conv_g4_s2", kernel: 3, stride: 2, padding: 1, groups: 4, Float.self)
        try checkConvolution("conv_g4_s2", kernel: 3, stride: 2, padding: 1, groups: 4, Double.self)
    }

    @Test func pointwiseConvolutionStride2() throws {
        try checkConvolution("conv1x1_s2", kernel: 1, stride: 2, padding: 0, groups: 1, Float.self)
        try checkConvolution("conv1x1_s2", kernel: 1, stride: 2, padding: 0, groups: 1, Double.self)
    }

    @Test func batchNormTraining() throws {
        try checkBatchNorm(Float.self)
        try checkBatchNorm(Double.self)
    }

    func checkBatchNorm<T: EngineScalar>(_: T.Type) throws {
        let f = try Fixtures.file("layers.safetensors")
        let s = try f.info("bn_train.x").shape
        let (n, c, hw) = (s[0], s[1], s[2] * s[3])
        var layout = StoreLayout()
        let bn = BatchNorm<T>("bn", c, maxGroups: 1, layout: &layout)
        let store = ParameterStore<T>(layout)
        bn.bind(store)
        store.params.copy(from: try f.values("bn_train.gamma") + f.values("bn_train.beta"))
        let x = Buffer<T>(count: n * c * hw), y = Buffer<T>(count: n * c * hw), dy = Buffer<T>(count: n * c * hw)
        x.copy(from: nchwToCnhw(try f.values("bn_train.x"), n: n, c: c, hw: hw))
        dy.copy(from: nchwToCnhw(try f.values("bn_train.dy"), n: n, c: c, hw: hw))
        bn.forwardTraining(x: x.base, y: y.base, n: n, hw: hw, group: n)
        #expect(relativeError(cnhwToNchw(y.toArray(), n: n, c: c, hw: hw), try f.doubles("bn_train.y")) < Self.tolerance)
        bn.backward(x: x.base, dy: dy.base, dx: dy.base, n: n, hw: hw, group: n)  // in place
        #expect(relativeError(cnhwToNchw(dy.toArray(), n: n, c: c, hw: hw), try f.doubles("bn_train.dx")) < Self.tolerance)
        let grads = store.grads.toArray()
        #expect(relativeError(Array(grads[0..<c]), try f.doubles("bn_train.dgamma")) < Self.tolerance)
        #expect(relativeError(Array(grads[c..<(2 * c)]), try f.doubles("bn_train.dbeta")) < Self.tolerance)
    }

    @Test func linearCrossEntropy() throws {
        try checkLinearCrossEntropy(Float.self)
        try checkLinearCrossEntropy(Double.self)
    }

    func checkLinearCrossEntropy<T: EngineScalar>(_: T.Type) throws {
        let f = try Fixtures.file("layers.safetensors")
        let hs = try f.info("linear_ce.h").shape, ws = try f.info("linear_ce.w").shape
        let (n, inF, outF) = (hs[0], hs[1], ws[0])
        var layout = StoreLayout()
        let fc = Linear<T>("fc", inF, outF, layout: &layout)
        let store = ParameterStore<T>(layout)
        fc.bind(store)
        store.params.copy(from: try f.values("linear_ce.w") + f.values("linear_ce.b"))
        // features arrive channel-major (in, N): the transpose of PyTorch's (N, in)
        let h = Buffer<T>(count: n * inF), logits = Buffer<T>(count: n * outF)
        let dLogits = Buffer<T>(count: n * outF), dh = Buffer<T>(count: n * inF)
        h.copy(from: nchwToCnhw(try f.values("linear_ce.h"), n: n, c: inF, hw: 1))
        let labels = try f.int64s("linear_ce.labels").map { Int32($0) }
        fc.forward(x: h.base, y: logits.base, n: n)
        #expect(relativeError(logits.toArray(), try f.doubles("linear_ce.logits")) < Self.tolerance)
        let (loss, _) = labels.withUnsafeBufferPointer {
            softmaxCrossEntropy(
                logits: logits.base, labels: $0.baseAddress!, n: n, classes: outF, divisor: n,
                dLogits: dLogits.base)
        }
        #expect(relativeError([loss], try f.doubles("linear_ce.loss")) < Self.tolerance)
        fc.backward(x: h.base, dy: dLogits.base, dx: dh.base, n: n)
        #expect(relativeError(cnhwToNchw(dh.toArray(), n: n, c: inF, hw: 1), try f.doubles("linear_ce.dh")) < Self.tolerance)
        let grads = store.grads.toArray()
        #expect(relativeError(Array(grads[0..<(outF * inF)]), try f.doubles("linear_ce.dw")) < Self.tolerance)
        #expect(relativeError(Array(grads[(outF * inF)...]), try f.doubles("linear_ce.db")) < Self.tolerance)
    }

    @Test(arguments: [true, false]) func sgd(nesterov: Bool) throws {
        try checkSGD(nesterov: nesterov, Float.self)
        try checkSGD(nesterov: nesterov, Double.self)
    }

    func checkSGD<T: EngineScalar>(nesterov: Bool, _: T.Type) throws {
        let f = try Fixtures.file("layers.safetensors")
        let hyper: [Double] = try f.values("sgd.hyper")
        var p: [T] = try f.values("sgd.p0")
        var buf = [T](repeating: 0, count: p.count)
        let opt = SGD(learningRate: hyper[0], momentum: hyper[1], weightDecay: hyper[2], nesterov: nesterov)
        let tag = nesterov ? "sgd.nesterov" : "sgd.plain"
        for (k, g) in [try f.values("sgd.g1") as [T], try f.values("sgd.g2") as [T]].enumerated() {
            p.withUnsafeMutableBufferPointer { pp in
                buf.withUnsafeMutableBufferPointer { bb in
                    g.withUnsafeBufferPointer { gg in
                        opt.step(params: pp.baseAddress!, grads: gg.baseAddress!, momentumBuffer: bb.baseAddress!, count: pp.count)
                    }
                }
            }
            #expect(relativeError(p, try f.doubles("\(tag).p\(k + 1)")) < Self.tolerance, "step \(k + 1)")
        }
    }
}
