import Foundation
import ResNeXt
import ResNeXtTrain
import Testing

/// `ConvolutionTuner` (`--tune-convolutions`): which paths it tries, what it keeps, that every
/// process keeps the same, and that checkpoints carry the choice.
@Suite struct ConvolutionTuningTests {
    static let config = ResNeXtConfig(depth: 29, cardinality: 4, baseChannels: 16)

    @Test func pickKeepsTheDefaultWithinTheMargin() {
        #expect(ConvolutionTuner.pick(seconds: [1.0], margin: 0.05) == 0)
        #expect(ConvolutionTuner.pick(seconds: [1.0, 0.96, 1.3], margin: 0.05) == 0, "4 % faster is within the margin")
        #expect(ConvolutionTuner.pick(seconds: [1.0, 0.94, 1.3], margin: 0.05) == 1)
        #expect(ConvolutionTuner.pick(seconds: [1.0, 0.9, 0.8], margin: 0.05) == 2, "the fastest, not the first that beats it")
        #expect(ConvolutionTuner.pick(seconds: [1.0, 1.2, 1.5], margin: 0) == 0)
    }

    @Test func namesRoundTrip() {
        for (name, path) in ConvolutionPath.named {
            #expect(ConvolutionPath(name: name) == path, "\(name)")
            #expect(path.description == name)
        }
        #expect(Set(ConvolutionPath.named.map(\.path)).count == ConvolutionPath.named.count, "distinct paths")
        #expect(ConvolutionPath(name: "fast") == nil)
    }

    /// The paths tried are those that run different kernels on the layer: a 1x1 layer has its own
    /// kernel or OpenBLAS; a grouped 3x3 stride-1 layer the direct kernel with and without its
    /// weight gradient, Winograd with either weight gradient where it applies (planes 16 or 32
    /// wide; at 16 channels per group the rules take the direct kernel), or im2col and OpenBLAS;
    /// a stride-2 one (lowered either way) the 1x1 kernel
    /// for its column gradient or OpenBLAS. What `agree` returns decides; every layer of a shape
    /// takes the path kept.
    @Test func triesDistinctPathsAndKeepsWhatTheProcessesAgreeOn() throws {
        let net = try ResNeXt<Float>(Self.config, maxBatch: 4)
        var tried: [String: [String]] = [:], agreed: [Double] = []
        // measured: OpenBLAS twice as fast wherever it is tried
        let choices = ConvolutionTuner.tune(
            net, n: 4, agree: { agreed = $0 },
            measure: { conv, _, _, paths in
                tried[conv.name] = paths.map(\.description)
                return paths.map { $0 == .openBLAS ? 0.5 : 1.0 }
            })
        #expect(tried["stage1.block1.conv1"] == ["default", "openblas"], "\(tried)")
        #expect(tried["stage1.block1.conv2"] == ["default", "openblas", "direct", "winograd", "winograd-weights"], "\(tried)")
        #expect(tried["stage3.block2.conv2"] == ["default", "openblas", "direct-weights"], "\(tried)")
        #expect(tried["stage2.block1.conv2"] == ["default", "openblas"], "\(tried)")
        #expect(tried["conv"] == nil, "the stem (no input gradient, not direct) has one path: \(tried)")
        #expect(agreed.count == choices.reduce(0) { $0 + ($1.paths.count > 1 ? $1.paths.count : 0) })
        #expect(choices.reduce(0) { $0 + $1.layers.count } == net.convolutionInputs.count)
        for choice in choices where choice.paths.count > 1 {
            #expect(choice.path == .openBLAS, "\(choice.layers[0].name)")
            for conv in choice.layers { #expect(conv.path == .openBLAS, "\(conv.name) shares the shape of \(choice.layers[0].name)") }
        }
        // the agreed timings decide, not this process's own: all equal keeps the defaults
        let tied = ConvolutionTuner.tune(
            net, n: 4, agree: { $0 = [Double](repeating: 1, count: $0.count) },
            measure: { _, _, _, paths in paths.map { $0 == .openBLAS ? 0.5 : 1.0 } })
        #expect(tied.allSatisfy { $0.path == .rules })
        #expect(net.convolutionInputs.allSatisfy { $0.conv.path == .rules })
        #expect(net.convolutionPaths == "")
    }

    /// Timed for real on a small model: every choice is one of the paths tried, with positive
    /// times, and the model trains on the paths kept as on the defaults (the same loss to float
    /// rounding).
    @Test func realTimingPicksAPathTried() throws {
        setBLASThreads(1)
        let config = ResNeXtConfig(depth: 11, cardinality: 2, baseChannels: 4)
        let images = randomArray(8 * 3072, seed: 3), labels: [Int32] = [1, 2, 3, 4, 5, 6, 7, 8]
        var losses: [Double] = []
        for tune in [false, true] {
            let net = try ResNeXt<Float>(config, maxBatch: 8)
            net.initialize(seed: 5)
            if tune {
                let choices = ConvolutionTuner.tune(net, n: 8, repeats: 1)
                for c in choices {
                    #expect(c.paths.contains(c.path))
                    #expect(c.paths.count == 1 || c.seconds.allSatisfy { $0 > 0 }, "\(c.seconds)")
                }
            }
            let sgd = SGD(learningRate: 0.05)
            let loss = images.withUnsafeBufferPointer { img in
                labels.withUnsafeBufferPointer { lab in
                    net.trainStep(images: img.baseAddress!, labels: lab.baseAddress!, n: 8, bnGroup: 4, optimizer: sgd).loss
                }
            }
            losses.append(loss)
        }
        #expect(abs(losses[0] - losses[1]) < 1e-5 * abs(losses[0]), "\(losses)")
    }

    /// `convolutionPaths` names every layer off the defaults; setting it restores them, and a
    /// checkpoint saved with tuned paths gives them back on load (nil where none were tuned).
    @Test func pathsTravelThroughCheckpoints() throws {
        let net = try ResNeXt<Float>(Self.config, maxBatch: 2)
        net.initialize(seed: 1)
        let layers = net.convolutionInputs.map(\.conv)
        layers[1].path = .openBLAS
        layers[5].path = .directWeights
        let text = net.convolutionPaths
        #expect(text == "\(layers[1].name)=openblas;\(layers[5].name)=direct-weights")
        let dir = try temporaryDirectory()
        try Checkpoint.save(net, step: 3, settings: .defaults, tunedPaths: true, to: dir + "/tuned.safetensors")
        try Checkpoint.save(net, step: 3, settings: .defaults, to: dir + "/plain.safetensors")

        let other = try ResNeXt<Float>(Self.config, maxBatch: 2)
        let loaded = try Checkpoint.load(dir + "/tuned.safetensors", into: other)
        #expect(loaded.paths == text)
        #expect(other.convolutionInputs.map(\.conv.path) == layers.map(\.path))
        let fresh = try ResNeXt<Float>(Self.config, maxBatch: 2)
        #expect(try Checkpoint.load(dir + "/plain.safetensors", into: fresh).paths == nil)
        #expect(fresh.convolutionInputs.allSatisfy { $0.conv.path == .rules })

        for bad in ["stage9.block1.conv1=openblas", "\(layers[1].name)=fast", "openblas"] {
            #expect(throws: ResNeXtError.self) { try other.setConvolutionPaths(bad) }
        }
        #expect(other.convolutionPaths == text, "a refused text changes nothing")
        try other.setConvolutionPaths("")
        #expect(other.convolutionPaths == "")
    }
}
