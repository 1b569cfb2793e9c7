import Foundation
import ResNeXt
import Testing

let testDataDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Data").path

/// A new folder for one test, inside this test process's own folder, which is removed when the
/// process exits (so runs of the suite leave nothing in the temporary folder).
func temporaryDirectory() throws -> String {
    let dir = testFolder + "/" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

let testFolder: String = {
    let root = NSTemporaryDirectory() + "resnext-tests-\(getpid())"
    atexit { _ = try? FileManager.default.removeItem(atPath: NSTemporaryDirectory() + "resnext-tests-\(getpid())") }
    return root
}()

@Suite struct StateDictTests {
    /// A file written by `safetensors.torch.save_file(model.state_dict(), path)` from the PyTorch
    /// reference (scripts/pytorch_interop.py) loads strictly, and evaluates to PyTorch's logits.
    @Test func loadsPyTorchStateDict() throws {
        let file = try SafeTensorsFile(path: testDataDirectory + "/pytorch_11_2x2d.safetensors")
        let config = ResNeXtConfig(depth: 11, cardinality: 2, baseChannels: 2)
        let net = try ResNeXt<Float>(config, maxBatch: 4)
        try net.loadStateDict(file)
        #expect(net.store.counters.allSatisfy { $0 == 1 }, "the reference's constructor leaves num_batches_tracked at 1")
        let eval = try SafeTensorsFile(path: testDataDirectory + "/pytorch_11_2x2d_eval.safetensors")
        let input = try eval.floats("input")
        let logits = input.withUnsafeBufferPointer { net.forward($0.baseAddress!, n: 4, mode: .inference) }
        #expect(relativeError(Array(UnsafeBufferPointer(start: logits, count: 40)), try eval.floats("logits")) < 1e-5)
    }

    /// Our file has PyTorch's names, order, dtypes and shapes, and reads back bit for bit.
    @Test func roundTrip() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = ResNeXtConfig(depth: 11, cardinality: 2, baseChannels: 2)
        let net = try ResNeXt<Float>(config, maxBatch: 2)
        net.initialize(seed: 9)
        net.store.counters[0] = 41
        try net.saveStateDict(to: dir + "/m.safetensors")
        let file = try SafeTensorsFile(path: dir + "/m.safetensors")
        #expect(file.names == net.store.entries.map(\.name), "file order is state_dict order")
        #expect(try file.info("bn.num_batches_tracked").dtype == .i64)
        #expect(try file.info("bn.num_batches_tracked").shape == [])
        #expect(try file.info("fc.weight").dtype == .f32)
        #expect(ResNeXt<Float>.recordedConfig(file) == config)
        let reference = try SafeTensorsFile(path: testDataDirectory + "/pytorch_11_2x2d.safetensors")
        for name in reference.names {
            #expect(try file.info(name).shape == reference.info(name).shape, "\(name)")
            #expect(try file.info(name).dtype == reference.info(name).dtype, "\(name)")
        }
        let other = try ResNeXt<Float>(config, maxBatch: 2)
        try other.loadStateDict(file)
        #expect(other.store.params.toArray() == net.store.params.toArray())
        #expect(other.store.stats.toArray() == net.store.stats.toArray())
        #expect(other.store.counters == net.store.counters)
        // the header is padded to 8 bytes, as safetensors writes it
        let bytes = try Data(contentsOf: URL(fileURLWithPath: dir + "/m.safetensors"))
        let headerLength = bytes.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        #expect(headerLength % 8 == 0)
    }

    @Test func initialisationIsReproducibleAndFollowsTheReference() throws {
        let config = ResNeXtConfig(depth: 29, cardinality: 2, baseChannels: 4)
        let a = try ResNeXt<Float>(config, maxBatch: 1), b = try ResNeXt<Float>(config, maxBatch: 1)
        a.initialize(seed: 17); b.initialize(seed: 17)
        #expect(a.store.params.toArray() == b.store.params.toArray(), "same seed, same bits")
        b.initialize(seed: 18)
        #expect(a.store.params.toArray() != b.store.params.toArray())
        for e in a.store.entries {
            let v = a.store.values(e.name)!.map(Double.init)
            if e.name.hasSuffix("num_batches_tracked") { #expect(v == [1]); continue }
            if e.name.hasSuffix("running_mean") { #expect(v.allSatisfy { $0 == 0 }); continue }
            if e.name.hasSuffix("running_var") { #expect(v.allSatisfy { $0 == Double(Float(0.9)) }); continue }
            if e.name == "fc.bias" || (e.name.hasSuffix(".bias")) { #expect(v.allSatisfy { $0 == 0 }, "\(e.name)"); continue }
            if e.shape.count == 1 { #expect(v.allSatisfy { $0 == 1 }, "\(e.name)"); continue }
            let mean = v.reduce(0, +) / Double(v.count)
            let std = (v.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(v.count)).squareRoot()
            if e.shape.count == 4 {
                // Kaiming normal, fan_out: std sqrt(2 / (K * R * S))
                let expected = (2.0 / Double(e.shape[0] * e.shape[2] * e.shape[3])).squareRoot()
                if v.count >= 500 { #expect(abs(std / expected - 1) < 0.1, "\(e.name): std \(std), expected \(expected)") }
            } else {
                // U(-1/sqrt(fan_in), 1/sqrt(fan_in))
                let bound = 1 / Double(e.shape[1]).squareRoot()
                #expect(v.allSatisfy { abs($0) <= bound }, "\(e.name)")
                #expect(abs(std / (bound / 3.0.squareRoot()) - 1) < 0.1, "\(e.name)")
            }
        }
    }

    @Test func missingTensorIsNamed() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let net = try ResNeXt<Float>(ResNeXtConfig(depth: 11, cardinality: 2, baseChannels: 2), maxBatch: 1)
        let tensors = net.stateDictTensors().filter { $0.name != "stage2.block1.conv2.weight" }
        try SafeTensorsFile.write(tensors, to: dir + "/m.safetensors")
        #expect(throws: ResNeXtError("\(dir)/m.safetensors: tensor 'stage2.block1.conv2.weight' is missing")) {
            try net.loadStateDict(SafeTensorsFile(path: dir + "/m.safetensors"))
        }
    }

    @Test func wrongShapeIsNamed() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let small = try ResNeXt<Float>(ResNeXtConfig(depth: 11, cardinality: 2, baseChannels: 2), maxBatch: 1)
        let wide = try ResNeXt<Float>(ResNeXtConfig(depth: 11, cardinality: 2, baseChannels: 4), maxBatch: 1)
        try small.saveStateDict(to: dir + "/m.safetensors")
        let error = #expect(throws: ResNeXtError.self) { try wide.loadStateDict(SafeTensorsFile(path: dir + "/m.safetensors")) }
        #expect(
            error?.message.contains("tensor 'conv.weight' has shape [2, 3, 3, 3], the model (ResNeXt-11 2x4d) needs [4, 3, 3, 3]") == true,
            "\(String(describing: error))")
        // a deeper model finds tensors it does not know: refused when strict
        let deep = try ResNeXt<Float>(ResNeXtConfig(depth: 20, cardinality: 2, baseChannels: 2), maxBatch: 1)
        try deep.saveStateDict(to: dir + "/deep.safetensors")
        let extra = #expect(throws: ResNeXtError.self) { try small.loadStateDict(SafeTensorsFile(path: dir + "/deep.safetensors")) }
        #expect(extra?.message.contains("unexpected tensor 'stage1.block2.") == true, "\(String(describing: extra))")
    }

    @Test func truncatedFileNamesTheByteOffset() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let net = try ResNeXt<Float>(ResNeXtConfig(depth: 11, cardinality: 2, baseChannels: 2), maxBatch: 1)
        try net.saveStateDict(to: dir + "/m.safetensors")
        let bytes = try Data(contentsOf: URL(fileURLWithPath: dir + "/m.safetensors"))
        try bytes.prefix(bytes.count - 100).write(to: URL(fileURLWithPath: dir + "/cut.safetensors"))
        let error = #expect(throws: ResNeXtError.self) { try SafeTensorsFile(path: dir + "/cut.safetensors") }
        #expect(
            error?.message.contains(
                "tensor 'fc.weight' ends at byte \(bytes.count - 40) but the file has \(bytes.count - 100) bytes: the file is truncated") == true,
            "\(String(describing: error))")
        try bytes.prefix(20).write(to: URL(fileURLWithPath: dir + "/header.safetensors"))
        let header = #expect(throws: ResNeXtError.self) { try SafeTensorsFile(path: dir + "/header.safetensors") }
        #expect(header?.message.contains("runs past the end of the file (20 bytes)") == true, "\(String(describing: header))")
        #expect(throws: ResNeXtError.self) { try SafeTensorsFile(path: dir + "/absent.safetensors") }
    }

    @Test func atomicWriteLeavesNoTemporaryFiles() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try writeAtomically([1, 2, 3], to: dir + "/a.bin")
        try writeAtomically([4, 5], to: dir + "/a.bin")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["a.bin"])
        #expect(try Data(contentsOf: URL(fileURLWithPath: dir + "/a.bin")) == Data([4, 5]))
        #expect(throws: ResNeXtError.self) { try writeAtomically([1], to: dir + "/no-such-folder/a.bin") }
    }
}

@Suite struct ModelSettingsTests {
    @Test(arguments: [
        (28, 8, 64, "--depth 28 is not 9n+2"),
        (2, 8, 64, "--depth 2 is not 9n+2"),
        (29, 0, 64, "--cardinality must be at least 1"),
        (29, 8, 0, "--base-channels must be at least 1"),
    ]) func badModelSettings(depth: Int, cardinality: Int, base: Int, message: String) {
        let error = #expect(throws: ResNeXtError.self) {
            _ = try ResNeXt<Float>(ResNeXtConfig(depth: depth, cardinality: cardinality, baseChannels: base), maxBatch: 2)
        }
        #expect(error?.message.hasPrefix(message) == true, "\(String(describing: error))")
    }

    @Test func batchNotDivisibleByGroup() {
        let error = #expect(throws: ResNeXtError.self) { try ResNeXtConfig.validateBatch(100, bnGroup: 16) }
        #expect(error?.message == "--batch-size 100 is not divisible by --bn-group 16: choose a BN group that divides the batch")
        #expect(throws: ResNeXtError.self) { try ResNeXtConfig.validateBatch(0, bnGroup: 16) }
        #expect(throws: ResNeXtError.self) { try ResNeXtConfig.validateBatch(16, bnGroup: 0) }
        #expect(throws: Never.self) { try ResNeXtConfig.validateBatch(128, bnGroup: 16) }
    }

    /// Parameter counts and multiply-accumulates equal the reference's (shared/reference/resnext.py).
    @Test(arguments: [(8, 64, 34_426_698, 5_387), (4, 64, 17_562_442, 2_736), (4, 16, 1_106_650, 171)])
    func sizesMatchTheReference(cardinality: Int, base: Int, parameters: Int, megaMACs: Int) throws {
        let net = try ResNeXt<Float>(ResNeXtConfig(depth: 29, cardinality: cardinality, baseChannels: base), maxBatch: 1)
        #expect(net.store.parameterCount == parameters)
        #expect(Int((Double(net.macsPerImage) / 1e6).rounded()) == megaMACs)
    }
}
