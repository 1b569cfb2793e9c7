import ResNeXt
import Testing

/// Finite-difference gradient checks of every layer type, for inputs and parameters, in float64
/// (the engine's own code instantiated for Double), with the random-projection objective
/// f = sum(r * y): with sum(y) the input gradient of batch norm would be zero and pass trivially.
/// Central differences with step 1e-6; the relative L2 error over the checked coordinates must be
/// below 1e-6 (a wrong gradient gives errors of order one).
@Suite struct GradientCheckTests {
    typealias D = Double
    static let step = 1e-6
    static let tolerance = 1e-6

    func expectClose(_ result: (error: Double, checked: Int), _ what: String) {
        #expect(result.checked > 0, "\(what): nothing checked")
        #expect(result.error < Self.tolerance, "\(what): finite-difference relative error \(result.error) over \(result.checked) coordinates")
    }

    /// On 7 x 6 planes, and on 8 x 6 for stride 2 (the phase-plane lowering needs even sizes).
    @Test(arguments: [
        (3, 1, 1, 1, 7), (3, 2, 1, 4, 7), (1, 2, 0, 1, 7), (1, 1, 0, 2, 7), (3, 1, 1, 2, 7),
        (3, 2, 1, 4, 8), (1, 2, 0, 1, 8),
    ]) func convolution(kernel: Int, stride: Int, padding: Int, groups: Int, height: Int) {
        let (n, c, k, h, w) = (2, 4, 8, height, 6)
        var layout = StoreLayout()
        let conv = Conv2d<D>("conv", c, k, kernel: kernel, stride: stride, padding: padding, groups: groups, layout: &layout)
        let store = ParameterStore<D>(layout)
        conv.bind(store)
        store.params.copy(from: randomArray(conv.weightCount, seed: 1).map(D.init))
        let (p, q) = conv.outputSize(h, w)
        let x = Buffer<D>(count: c * n * h * w), y = Buffer<D>(count: k * n * p * q)
        let dx = Buffer<D>(count: c * n * h * w), col = Buffer<D>(count: max(1, conv.columnCount(n: n, h: h, w: w)))
        x.copy(from: randomArray(x.count, seed: 2).map(D.init))
        let r = randomArray(y.count, seed: 3).map(D.init)
        let objective = { () -> Double in
            conv.forward(x: x.base, y: y.base, n: n, h: h, w: w, col: col.base)
            return projection(y.base, r)
        }
        _ = objective()
        let dy = Buffer<D>(count: y.count); dy.copy(from: r)
        conv.backward(x: x.base, dy: dy.base, dx: dx.base, n: n, h: h, w: w, col: col.base)
        let tag = "conv k\(kernel) s\(stride) p\(padding) g\(groups) \(h)x\(w)"
        expectClose(finiteDifferenceError(x: x.base, count: x.count, analytic: dx.toArray(), step: Self.step, objective: objective), "\(tag) dx")
        expectClose(
            finiteDifferenceError(
                x: store.params.base, count: conv.weightCount, analytic: store.grads.toArray(),
                step: Self.step, objective: objective), "\(tag) dW")
        // accumulate adds to what dx held
        let before = dx.toArray()
        conv.backward(x: x.base, dy: dy.base, dx: dx.base, accumulate: true, n: n, h: h, w: w, col: col.base)
        #expect(relativeError(dx.toArray(), before.map { 2 * $0 }) < 1e-12, "\(tag) accumulate")
    }

    /// Plain BN, BN + ReLU, and a block's output bn(x) + s then ReLU (the residual add and ReLU
    /// fused into BN), whose gradient for s is the masked dy that `maskedDy` receives.
    @Test(arguments: [(6, 3, false, false), (6, 2, true, false), (4, 4, true, false), (6, 2, true, true)])
    func batchNormTraining(n: Int, group: Int, relu: Bool, residual: Bool) {
        let (c, hw) = (3, 5)
        var layout = StoreLayout()
        let bn = BatchNorm<D>("bn", c, maxGroups: n / group, layout: &layout)
        let store = ParameterStore<D>(layout)
        bn.bind(store)
        store.params.copy(from: (randomArray(c, seed: 4, scale: 0.3, offset: 1) + randomArray(c, seed: 5, scale: 0.3)).map(D.init))
        let x = Buffer<D>(count: c * n * hw), y = Buffer<D>(count: c * n * hw), dx = Buffer<D>(count: c * n * hw)
        let s = Buffer<D>(count: c * n * hw), ds = Buffer<D>(count: c * n * hw)
        x.copy(from: randomArray(x.count, seed: 6, scale: 2, offset: 1).map(D.init))
        s.copy(from: randomArray(s.count, seed: 10).map(D.init))
        let r = randomArray(y.count, seed: 7).map(D.init)
        let objective = { () -> Double in
            bn.forwardTraining(
                x: x.base, y: y.base, n: n, hw: hw, group: group, relu: relu,
                residual: residual ? UnsafePointer(s.base) : nil)
            return projection(y.base, r)
        }
        _ = objective()
        let dy = Buffer<D>(count: y.count); dy.copy(from: r)
        if relu && !residual {
            // the mask recomputed from x is the one y gives
            bn.backward(x: x.base, dy: dy.base, dx: dx.base, n: n, hw: hw, group: group, reluOutput: y.base)
            let fromOutput = dx.toArray()
            store.grads.zero()
            bn.backward(x: x.base, dy: dy.base, dx: dx.base, n: n, hw: hw, group: group, relu: true)
            #expect(dx.toArray() == fromOutput, "mask from x equals mask from y")
        } else {
            bn.backward(
                x: x.base, dy: dy.base, dx: dx.base, n: n, hw: hw, group: group,
                reluOutput: relu ? UnsafePointer(y.base) : nil, maskedDy: residual ? ds.base : nil)
        }
        #expect(dy.toArray() == r, "backward leaves dy as it was")
        // skip inputs whose pre-activation sits next to the ReLU kink
        let out = y.toArray()
        bn.forwardTraining(
            x: x.base, y: y.base, n: n, hw: hw, group: group, relu: false,
            residual: residual ? UnsafePointer(s.base) : nil)
        let before = y.toArray()
        let skip = { (i: Int) in relu && abs(before[i]) < 1e-3 }
        let tag = "bn n\(n) group \(group) relu \(relu) residual \(residual)"
        expectClose(
            finiteDifferenceError(
                x: x.base, count: x.count, analytic: dx.toArray(), step: Self.step, samples: 1000,
                skip: skip, objective: objective), "\(tag) dx")
        expectClose(
            finiteDifferenceError(
                x: store.params.base, count: 2 * c, analytic: store.grads.toArray(), step: Self.step,
                objective: objective), "\(tag) dgamma, dbeta")
        if residual {
            expectClose(
                finiteDifferenceError(
                    x: s.base, count: s.count, analytic: ds.toArray(), step: Self.step,
                    skip: skip, objective: objective), "\(tag) d(residual)")
            #expect(zip(out, ds.toArray()).contains { $0.0 == 0 && $0.1 == 0 }, "\(tag): some outputs clipped")
        }
    }

    /// The group semantics themselves: each group normalised alone, batch statistics summed over
    /// groups (group means; unbiased group variances).
    @Test func batchNormGroupsAreIndependent() {
        let (c, hw, n, group) = (2, 4, 6, 3)
        var layout = StoreLayout()
        let whole = BatchNorm<D>("bn", c, maxGroups: 2, layout: &layout)
        let store = ParameterStore<D>(layout)
        whole.bind(store)
        store.params.copy(from: [1.5, 0.5, 0.2, -0.1])
        let xs = randomArray(c * n * hw, seed: 8, scale: 2, offset: 3).map(D.init)
        let x = Buffer<D>(count: xs.count), y = Buffer<D>(count: xs.count)
        x.copy(from: xs)
        whole.forwardTraining(x: x.base, y: y.base, n: n, hw: hw, group: group)
        for ch in 0..<c {
            var meanSum = 0.0, varSum = 0.0
            for g in 0..<(n / group) {
                let v = Array(xs[((ch * n + g * group) * hw)..<((ch * n + (g + 1) * group) * hw)])
                let m = v.reduce(0, +) / D(v.count)
                let biased = v.map { ($0 - m) * ($0 - m) }.reduce(0, +) / D(v.count)
                meanSum += m; varSum += biased * D(v.count) / D(v.count - 1)
                let gamma = store.params.base[ch], beta = store.params.base[c + ch]
                for (i, xi) in v.enumerated() {
                    let expected = gamma * (xi - m) / (biased + 1e-5).squareRoot() + beta
                    #expect(abs(y.base[(ch * n + g * group) * hw + i] - expected) < 1e-12)
                }
            }
            #expect(abs(store.batchStats.base[ch] - meanSum) < 1e-12, "summed group means")
            #expect(abs(store.batchStats.base[c + ch] - varSum) < 1e-12, "summed unbiased group variances")
        }
        // running statistics move by the mean over groups
        store.stats.copy(from: [0, 0, 1, 1])
        store.updateRunningStatistics(groups: n / group)
        #expect(abs(store.stats.base[0] - 0.1 * store.batchStats.base[0] / 2) < 1e-12)
        #expect(abs(store.stats.base[c] - (0.9 + 0.1 * store.batchStats.base[c] / 2)) < 1e-12)
        #expect(store.counters == [1])
    }

    @Test func batchNormInference() {
        let (c, hw, n) = (3, 4, 2)
        var layout = StoreLayout()
        let bn = BatchNorm<D>("bn", c, maxGroups: 1, layout: &layout)
        let store = ParameterStore<D>(layout)
        bn.bind(store)
        store.params.copy(from: [1.2, 0.8, -0.5, 0.1, 0.0, -0.3])
        store.stats.copy(from: [0.3, -0.2, 0.1, 0.7, 1.5, 0.9])
        let xs = randomArray(c * n * hw, seed: 9).map(D.init)
        let x = Buffer<D>(count: xs.count), y = Buffer<D>(count: xs.count)
        x.copy(from: xs)
        bn.forwardInference(x: x.base, y: y.base, n: n, hw: hw)
        for ch in 0..<c {
            for i in 0..<(n * hw) {
                let expected =
                    store.params.base[ch] * (xs[ch * n * hw + i] - store.stats.base[ch])
                    / (store.stats.base[c + ch] + 1e-5).squareRoot() + store.params.base[c + ch]
                #expect(abs(y.base[ch * n * hw + i] - expected) < 1e-12)
            }
        }
    }

    @Test func globalAveragePooling() {
        let (c, n, hw) = (3, 2, 9)
        let x = Buffer<D>(count: c * n * hw), y = Buffer<D>(count: c * n), dx = Buffer<D>(count: c * n * hw)
        x.copy(from: randomArray(x.count, seed: 13).map(D.init))
        let r = randomArray(y.count, seed: 14).map(D.init)
        let objective = { () -> Double in
            globalAveragePoolForward(x: x.base, y: y.base, c: c, n: n, hw: hw)
            return projection(y.base, r)
        }
        let dy = Buffer<D>(count: y.count); dy.copy(from: r)
        globalAveragePoolBackward(dy: dy.base, dx: dx.base, c: c, n: n, hw: hw)
        expectClose(finiteDifferenceError(x: x.base, count: x.count, analytic: dx.toArray(), step: Self.step, objective: objective), "pool dx")
    }

    @Test func linearAndCrossEntropy() {
        let (inF, outF, n) = (7, 5, 4)
        var layout = StoreLayout()
        let fc = Linear<D>("fc", inF, outF, layout: &layout)
        let store = ParameterStore<D>(layout)
        fc.bind(store)
        store.params.copy(from: randomArray(store.parameterCount, seed: 15).map(D.init))
        let x = Buffer<D>(count: inF * n), logits = Buffer<D>(count: n * outF)
        let dLogits = Buffer<D>(count: n * outF), dx = Buffer<D>(count: inF * n)
        x.copy(from: randomArray(x.count, seed: 16).map(D.init))
        let labels: [Int32] = [0, 3, 4, 1]
        // objective: the mean cross-entropy of the linear layer's logits
        let objective = { () -> Double in
            fc.forward(x: x.base, y: logits.base, n: n)
            return labels.withUnsafeBufferPointer {
                softmaxCrossEntropy(logits: logits.base, labels: $0.baseAddress!, n: n, classes: outF, divisor: n, dLogits: nil).loss
            }
        }
        _ = objective()
        _ = labels.withUnsafeBufferPointer {
            softmaxCrossEntropy(logits: logits.base, labels: $0.baseAddress!, n: n, classes: outF, divisor: n, dLogits: dLogits.base)
        }
        let analyticLogits = dLogits.toArray()
        expectClose(
            finiteDifferenceError(
                x: logits.base, count: logits.count, analytic: analyticLogits, step: Self.step,
                objective: {
                    labels.withUnsafeBufferPointer {
                        softmaxCrossEntropy(logits: logits.base, labels: $0.baseAddress!, n: n, classes: outF, divisor: n, dLogits: nil).loss
                    }
                }), "cross-entropy dlogits")
        fc.backward(x: x.base, dy: dLogits.base, dx: dx.base, n: n)
        expectClose(finiteDifferenceError(x: x.base, count: x.count, analytic: dx.toArray(), step: Self.step, objective: objective), "linear dx")
        expectClose(
            finiteDifferenceError(
                x: store.params.base, count: store.parameterCount, analytic: store.grads.toArray(),
                step: Self.step, objective: objective), "linear dW, db")
    }

    /// The whole network: gradients of the mean loss for a sample of every parameter tensor,
    /// with BN groups, in float64.
    @Test func wholeModel() throws {
        let config = ResNeXtConfig(depth: 11, cardinality: 2, baseChannels: 2)
        let (n, group) = (4, 2)
        let net = try ResNeXt<D>(config, maxBatch: n)
        net.initialize(seed: 3)
        let images = randomArray(n * 3 * 32 * 32, seed: 17).map(D.init)
        let labels: [Int32] = [1, 7, 3, 3]
        try images.withUnsafeBufferPointer { img in
            try labels.withUnsafeBufferPointer { lab in
                let objective = { () -> Double in
                    net.forward(img.baseAddress!, n: n, mode: .training(bnGroup: group))
                    return softmaxCrossEntropy(
                        logits: net.logits.base, labels: lab.baseAddress!, n: n, classes: 10,
                        divisor: n, dLogits: nil
                    ).loss
                }
                net.store.grads.zero()
                net.forward(img.baseAddress!, n: n, mode: .training(bnGroup: group))
                _ = net.loss(labels: lab.baseAddress!, n: n)
                net.backward(n: n, bnGroup: group)
                let grads = net.store.grads.toArray()
                for e in net.store.entries where e.kind == .parameter {
                    let analytic = Array(grads[e.offset..<(e.offset + e.count)])
                    let result = finiteDifferenceError(
                        x: net.store.params.base + e.offset, count: e.count, analytic: analytic,
                        step: Self.step, samples: 12, objective: objective)
                    // ReLU kinks can sit anywhere in a whole network: allow a looser bound here,
                    // still far below what a wrong gradient gives
                    #expect(result.error < 1e-4, "\(e.name): finite-difference relative error \(result.error)")
                }
                _ = try #require(net.store.entries.first)
            }
        }
    }
}
