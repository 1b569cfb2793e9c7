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
        func float(_ key: String) throws -> Float {
            guard let v = Float(try meta(key)) else { throw ResNeXtError("\(name): metadata '\(key)' is not a number") }
            return v
        }
        config = ResNeXtConfig(depth: try int("depth"), cardinality: try int("cardinality"),
                               baseChannels: try int("base_channels"))
        batch = try int("batch"); bnGroup = try int("bn_group"); steps = try int("steps")
        optimizer = SGD(learningRate: try float("lr"), momentum: try float("momentum"),
                        weightDecay: try float("weight_decay"), nesterov: try meta("nesterov") == "true")
    }
}

/// Whole training steps against PyTorch float64: eval logits and loss, each step's logits, loss,
/// every gradient and the whole state after the step. Tolerances from the fixtures README:
/// logits and loss 1e-4, gradients and states 2e-3 (relative L2).
@Suite struct ModelFixtureTests {
    static let outputTolerance = 1e-4
    static let stateTolerance = 2e-3

    @Test func publicFixturesArePresent() throws {
        let files = try Fixtures.modelFiles()
        #expect(files.count >= 3, "expected the three public model fixtures in \(Fixtures.directory), found \(files)")
        _ = try Fixtures.file("layers.safetensors")
    }

    @Test func everyModelFixture() throws {
        let files = try Fixtures.modelFiles()
        #expect(!files.isEmpty, "no model fixtures in \(Fixtures.directory)")
        for name in files { try checkModel(name) }
    }

    func checkModel(_ name: String) throws {
        let c = try ModelCase(name)
        let net = try ResNeXt(c.config, maxBatch: c.batch)
        try net.loadStateDict(c.file, prefix: "init.")
        let input = try c.file.floats("input")
        let labels = try c.file.int64s("labels").map { Int32($0) }
        let classes = c.config.numClasses

        try input.withUnsafeBufferPointer { x in
            try labels.withUnsafeBufferPointer { y in
                let logits = net.forward(x.baseAddress!, n: c.batch, mode: .inference)
                let evalLogits = Array(UnsafeBufferPointer(start: logits, count: c.batch * classes))
                #expect(relativeError(evalLogits, try c.file.floats("eval.logits")) < Self.outputTolerance, "\(name) eval.logits")
                let evalLoss = net.loss(labels: y.baseAddress!, n: c.batch).loss
                #expect(relativeError([Float(evalLoss)], try c.file.floats("eval.loss")) < Self.outputTolerance, "\(name) eval.loss")

                for step in 1...c.steps {
                    let tag = "\(name) step\(step)"
                    net.store.grads.zero()
                    let out = net.forward(x.baseAddress!, n: c.batch, mode: .training(bnGroup: c.bnGroup))
                    let stepLogits = Array(UnsafeBufferPointer(start: out, count: c.batch * classes))
                    #expect(relativeError(stepLogits, try c.file.floats("step\(step).logits")) < Self.outputTolerance, "\(tag).logits")
                    let loss = net.loss(labels: y.baseAddress!, n: c.batch).loss
                    #expect(relativeError([Float(loss)], try c.file.floats("step\(step).loss")) < Self.outputTolerance, "\(tag).loss")
                    net.backward(n: c.batch, bnGroup: c.bnGroup)
                    for e in net.store.entries where e.kind == .parameter {
                        let err = relativeError(net.store.gradient(e.name)!, try c.file.floats("step\(step).grad.\(e.name)"))
                        if ProcessInfo.processInfo.environment["DEBUGFIX"] != nil { print("DBG \(tag) grad \(e.name) \(err)") }
                        #expect(err < Self.stateTolerance, "\(tag).grad.\(e.name): \(err)")
                    }
                    net.store.updateRunningStatistics(groups: c.batch / c.bnGroup)
                    c.optimizer.step(net.store)
                    for e in net.store.entries {
                        let ref = "step\(step).\(e.name)"
                        if e.kind == .counter {
                            #expect(net.store.counters[e.offset] == (try c.file.int64s(ref))[0], "\(tag).\(e.name)")
                        } else {
                            let err = relativeError(net.store.values(e.name)!, try c.file.floats(ref))
                            if ProcessInfo.processInfo.environment["DEBUGFIX"] != nil { print("DBG \(ref) \(err)") }
                            #expect(err < Self.stateTolerance, "\(ref): \(err)")
                        }
                    }
                }
            }
        }
    }

    /// The state_dict names and shapes are exactly the fixture's `init.*` entries, in the same set.
    @Test func stateDictNamesMatchPyTorch() throws {
        for name in try Fixtures.modelFiles() {
            let c = try ModelCase(name)
            let net = try ResNeXt(c.config, maxBatch: 2)
            let ours = Dictionary(uniqueKeysWithValues: net.store.entries.map { ($0.name, $0.shape) })
            let theirs = c.file.names.filter { $0.hasPrefix("init.") }
            #expect(ours.count == theirs.count, "\(name): \(ours.count) entries vs \(theirs.count)")
            for t in theirs {
                #expect(ours[String(t.dropFirst(5))] == (try c.file.info(t).shape), "\(name): \(t)")
            }
        }
    }
}
