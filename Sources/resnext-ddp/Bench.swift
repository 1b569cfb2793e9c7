import ArgumentParser
import Foundation
import ResNeXt
import ResNeXtTrain

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Time training steps on random data: images/s, ms per step, effective GFLOP/s, peak memory.",
        discussion: "Under mpirun each process takes batch-size / P images and gradients are allreduced, as in training.")

    @OptionGroup var model: ModelOptions
    @Option(name: .customLong("batch-size"), help: "Images per step.")
    var batchSize: Int = 128
    @Option(name: .customLong("bn-group"), help: "Images per BN group.")
    var bnGroup: Int = 16
    @Option(help: "OpenBLAS threads.")
    var threads: Int = 1
    @Option(help: "Timed steps (after one warm-up step).")
    var steps: Int = 5
    @Option(help: "Seed of the random weights and data.")
    var seed: UInt64 = 1
    @Option(name: .customLong("bucket-mb"), help: "Gradient allreduce bucket in MiB, reduced while the backward pass goes on; 0: one allreduce after it.")
    var bucketMB = TrainSettings.defaultBucketMebibytes
    @Option(name: .customLong("simulate-network"), help: "Add a simulated network of this many GB/s: each bucket also spends bytes / rate on one link, while the CPU computes (shows the overlap).")
    var simulateNetwork: Double?
    @Flag(help: "Print one JSON object instead of text.")
    var json = false
    @Flag(help: "Print the time per kind of work (GEMM, im2col, batch norm, ...) over the timed steps.")
    var profile = false
    @Flag(help: "Then time each distinct grouped 3x3 convolution of the model, forward and backward, three ways: im2col + GEMM, the default (the direct kernel where it applies), and direct including the weight gradient; then every distinct convolution on the default path, and their sum per step against SGEMM (the ceiling the convolutions put on the step). One process only.")
    var layers = false
    @Option(help: ArgumentHelp("Time the steps with one of the engine's paths off and on in turn (off, on, on, off, off, ...; --steps each, after a warm-up step of each), in the same process, so that the machine's drift falls on both; print each setting's median. tuned: the default paths against those --tune-convolutions keeps.", valueName: Alternate.names.joined(separator: "|")))
    var alternate: Alternate?
    @Flag(name: .customLong("tune-convolutions"), help: "Before the steps, time each distinct convolution on each of the engine's paths (own kernels or OpenBLAS) and keep the fastest where it beats the default by more than 5 %, as torch.backends.cudnn.benchmark; print the choices. All processes agree on them.")
    var tuneConvolutions = false

    func validate() throws {
        guard threads >= 1 else { throw ValidationError("--threads must be at least 1") }
        guard steps >= 1 else { throw ValidationError("--steps must be at least 1") }
        do { try TrainSettings.validateBucket(mebibytes: bucketMB) } catch { throw ValidationError("\(error)") }
        if let simulateNetwork, !(simulateNetwork > 0 && simulateNetwork.isFinite) {
            throw ValidationError("--simulate-network must be a positive rate in GB/s (got \(simulateNetwork))")
        }
        do { try ResNeXtConfig.validateBatch(batchSize, bnGroup: bnGroup) } catch { throw ValidationError("\(error)") }
        if tuneConvolutions && (layers || (alternate != nil && alternate != .tuned)) {
            throw ValidationError("--tune-convolutions fixes each layer's path, which --layers and --alternate compare; use one of them (--alternate tuned times the tuned paths against the defaults)")
        }
        if layers && alternate != nil { throw ValidationError("--layers and --alternate exclude each other") }
        do { try ResNeXtConfig(depth: model.depth, cardinality: model.cardinality, baseChannels: model.baseChannels).validate() }
        catch { throw ValidationError("\(error)") }
    }

    func run() throws {
        let comm = makeCommunicator()
        defer { finishCommunicator(comm) }
        guard batchSize % (comm.size * bnGroup) == 0 else {
            if comm.isRoot {
                FileHandleOutput.standardError.write("error: --batch-size \(batchSize) is not divisible by \(comm.size) processes x --bn-group \(bnGroup)\n")
            }
            finishCommunicator(comm)
            throw ExitCode(1)
        }
        if layers && comm.size > 1 {
            if comm.isRoot { FileHandleOutput.standardError.write("error: --layers times single layers; run it in one process, without mpirun\n") }
            finishCommunicator(comm)
            throw ExitCode(1)
        }
        setBLASThreads(threads)
        let perRank = batchSize / comm.size
        let config = ResNeXtConfig(depth: model.depth, cardinality: model.cardinality, baseChannels: model.baseChannels)
        let net: ResNeXt<Float>
        do { net = try ResNeXt<Float>(config, maxBatch: perRank) } catch { throw ValidationError("\(error)") }
        net.initialize(seed: seed)
        var tuning: (choices: [ConvolutionTuner.Choice], seconds: Double)? = nil
        if tuneConvolutions || alternate == .tuned {
            let t0 = Profile.now()
            let choices = ConvolutionTuner.tune(net, n: perRank, seed: seed, agree: { comm.allreduceSum(&$0) })
            tuning = (choices, Profile.now() - t0)
        }
        let tunedPaths = net.convolutionInputs.map(\.conv.path)  // --alternate tuned's "on"
        var rng = SplitMix64(seed: seed &+ 1 &+ UInt64(comm.rank))
        let images = (0..<(perRank * 3 * 32 * 32)).map { _ in Float(rng.nextNormal()) }
        let labels = (0..<perRank).map { _ in Int32(rng.nextInt(below: 10)) }
        let sgd = SGD(learningRate: 0.01)
        let reducer = GradientReducer(comm: comm, store: net.store, bucketFloats: GradientReducer.floats(mebibytes: bucketMB),
                                      simulatedBytesPerSecond: simulateNetwork.map { $0 * 1e9 })
        // the ceiling: a 1024^3 SGEMM timed on every process after each timed step (and a few
        // times after the last), so that the step and its ceiling see the same moments of a
        // shared machine; the steps end in an allreduce, so the processes run it together
        let probe = SGEMMProbe()
        var times: [Double] = [], communication: [Double] = []
        // with --alternate: the setting of each step (warm-ups off, on; then off, on, on, off, ...)
        let warmUps = alternate == nil ? 1 : 2
        let setting = { (i: Int) -> Bool in i < 2 ? i == 1 : ((i - 2) / 2 + (i - 2)) % 2 == 1 }
        var bySetting: [[Double]] = [[], []]
        // --alternate: a switch off (false) or on; the default paths (false) or the tuned ones
        let set = { (on: Bool) in
            switch alternate {
            case .engine(let engineSwitch): engineSwitch.isOn = on
            case .tuned: for ((conv, _, _), path) in zip(net.convolutionInputs, tunedPaths) { conv.path = on ? path : .rules }
            case nil: break
            }
        }
        let initially: Bool? = if case .engine(let engineSwitch) = alternate { engineSwitch.isOn } else { nil }
        defer { if let initially { set(initially) } }
        images.withUnsafeBufferPointer { img in
            labels.withUnsafeBufferPointer { lab in
                for i in 0..<(warmUps + (alternate == nil ? steps : 2 * steps)) {
                    if alternate != nil { set(setting(i)) }
                    if i == warmUps {
                        Profile.reset()
                        // --layers also times each convolution within the steps
                        for (conv, _, _) in net.convolutionInputs { conv.profiledSeconds = 0 }
                        Profile.enabled = profile || layers
                    }
                    comm.barrier()
                    let t0 = Profile.now()
                    let step = DataParallel.step(net, images: img.baseAddress!, labels: lab.baseAddress!, n: perRank,
                                                 globalBatch: batchSize, bnGroup: bnGroup, optimizer: sgd, reducer: reducer,
                                                 timeAllreduce: true)
                    let t = Profile.now() - t0
                    if i >= warmUps {
                        times.append(t); communication.append(step.allreduceSeconds)
                        if alternate != nil { bySetting[setting(i) ? 1 : 0].append(t) }
                        probe.sample()
                    }
                }
            }
        }
        Profile.enabled = false
        comm.barrier()
        for _ in 0..<SGEMMProbe.samplesAfter { probe.sample() }
        // every process's samples, rank by rank; each sample the median over the processes
        let count = probe.samples.count
        var allSamples = [Double](repeating: 0, count: comm.size * count)
        for (j, rate) in probe.samples.enumerated() { allSamples[comm.rank * count + j] = rate }
        comm.allreduceSum(&allSamples)
        let sgemmSamples = (0..<count).map { j in (0..<comm.size).map { allSamples[$0 * count + j] }.sorted()[comm.size / 2] }
        let sgemmMedian = sgemmSamples.sorted()[count / 2]
        let median = times.sorted()[times.count / 2]
        // with --alternate, each setting's steps
        let (offSorted, onSorted) = (bySetting[0].sorted(), bySetting[1].sorted())
        let offMedian = offSorted.isEmpty ? 0 : offSorted[offSorted.count / 2], onMedian = onSorted.isEmpty ? 0 : onSorted[onSorted.count / 2]
        // each adjacent pair of timed steps (off, on / on, off) holds one of each: their ratios
        // follow the machine's drift less than the ratio of the two medians does
        let pairRatios = alternate == nil ? [] : stride(from: 0, to: times.count - 1, by: 2).map { j in
            setting(warmUps + j) ? times[j] / times[j + 1] : times[j + 1] / times[j]
        }.sorted()
        let pairMedian = pairRatios.isEmpty ? 0 : pairRatios[pairRatios.count / 2]
        let commMedian = communication.sorted()[communication.count / 2]
        let imagesPerSecond = Double(batchSize) / median
        let gflops = 6 * Double(net.macsPerImage) * imagesPerSecond / 1e9
        let share = gflops / Double(comm.size) / sgemmMedian
        // each timed step's rate per process over the SGEMM timed right after it
        let gigaflopsPerProcess = 6 * Double(net.macsPerImage) * Double(perRank) / 1e9
        let adjacentShares = zip(times, sgemmSamples).map { gigaflopsPerProcess / $0 / $1 }.sorted()
        let adjacentShare = adjacentShares[adjacentShares.count / 2]
        var peaks = [Double](repeating: 0, count: comm.size)
        peaks[comm.rank] = Double(peakResidentBytes() ?? 0) / 1_048_576.0
        comm.allreduceSum(&peaks)
        guard comm.isRoot else { return }
        let peak = peaks.max() ?? 0
        if json {
            print("{\"model\":\"\(config)\",\"processes\":\(comm.size),\"batch\":\(batchSize),\"per_process_batch\":\(perRank),\"bn_group\":\(bnGroup),\"threads\":\(threads),\"blas_core\":\"\(blasCoreName)\",\"steps\":\(steps),\"images_per_s\":\(String(format: "%.2f", imagesPerSecond)),\"ms_per_step\":\(String(format: "%.1f", median * 1000)),\"allreduce_ms\":\(String(format: "%.2f", commMedian * 1000)),\"bucket_mb\":\(bucketMB),\"buckets\":\(reducer.buckets),\"simulated_gbps\":\(simulateNetwork.map { "\($0)" } ?? "null"),\"gflops\":\(String(format: "%.1f", gflops)),\"sgemm_gflops_per_process\":\(String(format: "%.1f", sgemmMedian)),\"step_share_of_sgemm\":\(String(format: "%.3f", share)),\"sgemm_samples\":\(count),\"sgemm_min\":\(String(format: "%.1f", sgemmSamples.min()!)),\"sgemm_max\":\(String(format: "%.1f", sgemmSamples.max()!)),\"step_share_of_adjacent_sgemm\":\(String(format: "%.3f", adjacentShare)),\"peak_mib_per_process\":\(String(format: "%.0f", peak))\(tuning.map { ",\"tuned_paths\":\"\(net.convolutionPaths)\",\"tuning_s\":\(String(format: "%.1f", $0.seconds))" } ?? "")\(alternate.map { ",\"alternate\":\"\($0.rawValue)\",\"ms_per_step_off\":\(String(format: "%.1f", offMedian * 1000)),\"ms_per_step_on\":\(String(format: "%.1f", onMedian * 1000)),\"on_off_pair_median\":\(String(format: "%.3f", pairMedian))" } ?? "")}")
        } else {
            print("\(config), \(comm.size) process(es) x \(perRank) images = batch \(batchSize), BN group \(bnGroup), \(threads) thread(s) each (OpenBLAS \(blasCoreName)), \(net.store.parameterCount) parameters, \(String(format: "%.3f", Double(net.macsPerImage) / 1e9)) GMAC/image")
            print(String(format: "median of %d steps: %.1f ms/step (waiting for allreduce %.2f ms), %.2f images/s, %.1f GFLOP/s effective, peak memory %.0f MiB per process",
                         times.count, median * 1000, commMedian * 1000, imagesPerSecond, gflops, peak))
            print(String(format: "SGEMM 1024x1024x1024 between the steps: %.1f GFLOP/s per process (median of %d, %.1f-%.1f); the step runs at %.0f %% of it (each step against the SGEMM right after it: median %.0f %%, %.0f-%.0f %%)",
                         sgemmMedian, count, sgemmSamples.min()!, sgemmSamples.max()!, 100 * share,
                         100 * adjacentShare, 100 * adjacentShares.first!, 100 * adjacentShares.last!))
        }
        if !json { print(Startup.blasKernelsLine) }
        if !json && !tuneConvolutions && alternate == nil && !layers, let hint = untunedAVX512Hint { print(hint) }
        if let tuning, !json { print(ConvolutionTuner.report(tuning.choices, processes: comm.size, seconds: tuning.seconds)) }
        if let alternate, !json {
            print(String(format: "--alternate %@ (%@), %d steps each in the same run: off %.1f ms/step (%.1f-%.1f), on %.1f ms/step (%.1f-%.1f); on/off %.3f; on/off of the %d adjacent pairs: median %.3f (%.3f-%.3f)",
                         alternate.rawValue, alternate.settings, steps, offMedian * 1000, offSorted[0] * 1000,
                         offSorted.last! * 1000, onMedian * 1000, onSorted[0] * 1000, onSorted.last! * 1000, onMedian / offMedian,
                         pairRatios.count, pairMedian, pairRatios[0], pairRatios.last!))
        }
        if profile { print(Self.profileTable(steps: times.count, total: times.reduce(0, +))) }
        if layers {
            print(Self.layerTable(net, n: perRank, repeats: max(steps, 3), seed: seed, sgemm: sgemmMedian, steps: times.count,
                                  step: median, share: share))
        }
    }
}

/// What `bench --alternate` flips between steps: one of the engine's switches (off, on), or the
/// convolution paths (`tuned`: the default rules, then those `--tune-convolutions` keeps).
enum Alternate: Equatable, ExpressibleByArgument {
    case engine(EngineSwitch), tuned

    static let names = EngineSwitch.allCases.map(\.rawValue) + ["tuned"]

    init?(argument: String) {
        if argument == "tuned" { self = .tuned } else if let s = EngineSwitch(rawValue: argument) { self = .engine(s) } else { return nil }
    }

    var rawValue: String {
        switch self {
        case .engine(let s): s.rawValue
        case .tuned: "tuned"
        }
    }

    /// What "off" and "on" mean, for the printed line.
    var settings: String {
        switch self {
        case .engine(let s): "\(s.environmentVariable)=0 and 1"
        case .tuned: "off: the default paths, on: the tuned ones"
        }
    }

    static var allValueStrings: [String] { names }
}

extension Bench {

    /// Two tables of `net`'s convolutions, each timed on its own (a copy with random weights and
    /// data, n images), forward then backward with the input gradient; medians over `repeats`.
    /// First each distinct grouped 3x3 and 1x1 stride-1 convolution for each way of computing it
    /// (the paths alternate); then every distinct convolution on the default path with how many layers share
    /// its shape, and their sum: the time the step would spend in convolutions if each ran as it
    /// does alone, against `sgemm` (GFLOP/s): a ceiling on the step's share of SGEMM. Next to it,
    /// what the same layers took within the `steps` timed steps (`Conv2d.profiledSeconds`), where
    /// their operands are what the layers before them left in cache, not a repetition's own.
    /// Last, the in-step figures by kind of convolution, and the step's budget at 70 % of the
    /// SGEMM (the issue's goal): the `step` (seconds, the timed steps' median) scaled from its
    /// `share` of the SGEMM to 70 %.
    static func layerTable(_ net: ResNeXt<Float>, n: Int, repeats: Int, seed: UInt64, sgemm: Double, steps: Int,
                           step: Double, share: Double) -> String {
        let paths: [(name: String, path: ConvolutionPath)] = [
            ("im2col + GEMM", .openBLAS), ("default", .rules), ("direct, weight gradient too", .directWeights)]
        var lines = ["| layer | C -> K, groups, stride, input, kernel | path | forward ms | backward ms | of which im2col/col2im ms | GFLOP/s |",
                     "|---|---|---|---:|---:|---:|---:|"]
        var rng = SplitMix64(seed: seed &+ 7)
        let shapes = net.distinctConvolutions
        let pointwisePaths: [(name: String, path: ConvolutionPath)] = [("OpenBLAS GEMM", .openBLAS), ("default", .rules)]
        for (layers, h, w, _) in shapes {
            let model = layers[0]
            guard (model.kernel == 3 && model.groups > 1) || (model.kernel == 1 && model.stride == 1) else { continue }
            let modelPaths = model.kernel == 1 ? pointwisePaths : paths
            let times = ConvolutionTuner.time(model, h: h, w: w, n: n, paths: modelPaths.map(\.path), repeats: repeats, rng: &rng)
            for (i, path) in modelPaths.enumerated() {
                let t = times[i]
                lines.append(String(format: "| %@ | %@ | %@ | %.2f | %.2f | %.2f | %.1f |", model.name, shapeText(model, h, w),
                                    path.name, t.forward * 1000, t.backward * 1000, t.lowering * 1000,
                                    t.flops / (t.forward + t.backward) / 1e9))
            }
        }
        lines += ["", "| layer (and those of the same shape) | C -> K, groups, stride, input, kernel | layers | forward ms | backward ms | ms per step, all of them | GFLOP/s | in the step: ms per step, all of them | GFLOP/s |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        var total = 0.0, totalFlops = 0.0, totalInStep = 0.0
        var kinds: [(name: String, layers: Int, flops: Double, inStep: Double)] = []
        for (layers, h, w, stem) in shapes {
            let model = layers[0], count = layers.count
            let inStep = layers.reduce(0) { $0 + $1.profiledSeconds } / Double(steps)
            // as in the step, the stem computes no input gradient
            let t = ConvolutionTuner.time(model, h: h, w: w, n: n, paths: [.rules], repeats: repeats, rng: &rng,
                                          inputGradient: !stem)[0]
            total += Double(count) * (t.forward + t.backward)
            totalFlops += Double(count) * t.flops
            totalInStep += inStep
            let kind = convolutionKind(model, stem: stem)
            if let k = kinds.firstIndex(where: { $0.name == kind }) {
                kinds[k].layers += count; kinds[k].flops += Double(count) * t.flops; kinds[k].inStep += inStep
            } else {
                kinds.append((kind, count, Double(count) * t.flops, inStep))
            }
            lines.append(String(format: "| %@ | %@ | %d | %.2f | %.2f | %.1f | %.1f | %.2f | %.1f |", model.name, shapeText(model, h, w),
                                count, t.forward * 1000, t.backward * 1000,
                                Double(count) * (t.forward + t.backward) * 1000, t.flops / (t.forward + t.backward) / 1e9,
                                inStep * 1000, Double(count) * t.flops / inStep / 1e9))
        }
        lines.append(String(format: "all convolutions, each on its own: %.1f ms per step of %d images, %.1f GFLOP/s, %.0f %% of the SGEMM above",
                            total * 1000, n, totalFlops / total / 1e9, 100 * totalFlops / total / 1e9 / sgemm))
        lines.append(String(format: "the same convolutions within the steps: %.2f ms per step, %.1f GFLOP/s, %.0f %% of the SGEMM above",
                            totalInStep * 1000, totalFlops / totalInStep / 1e9, 100 * totalFlops / totalInStep / 1e9 / sgemm))
        lines += ["", "| kind of convolution (within the steps) | layers | share of their arithmetic | ms per step | GFLOP/s | share of the SGEMM above |",
                  "|---|---:|---:|---:|---:|---:|"]
        for k in kinds.sorted(by: { $0.inStep > $1.inStep }) {
            lines.append(String(format: "| %@ | %d | %.0f %% | %.1f | %.1f | %.0f %% |", k.name, k.layers, 100 * k.flops / totalFlops,
                                k.inStep * 1000, k.flops / k.inStep / 1e9, 100 * k.flops / k.inStep / 1e9 / sgemm))
        }
        // the step at 70 % of the SGEMM, and what is left of it once the rest of the step is paid
        let target = step * share / 0.7, rest = step - totalInStep
        lines.append(String(format: "70 %% of the SGEMM above is a step of %.1f ms (these steps: %.1f ms, of which %.1f outside the "
                            + "convolutions); at this rest the convolutions would need %@", target * 1000, step * 1000, rest * 1000,
                            target > rest ? String(format: "%.0f %% of the SGEMM", 100 * totalFlops / (target - rest) / 1e9 / sgemm)
                                : "more than all of it: the rest alone is longer"))
        return lines.joined(separator: "\n")
    }

    /// The row of the by-kind table a convolution falls in.
    static func convolutionKind(_ c: Conv2d<Float>, stem: Bool) -> String {
        if stem { return "stem (3x3, no input gradient)" }
        let shape = c.kernel == 1 ? "1x1" : "\(c.kernel)x\(c.kernel)\(c.groups > 1 ? " grouped" : "")"
        return "\(shape), stride \(c.stride)\(c.kernel == 1 && c.stride > 1 ? " (projection shortcuts)" : "")"
    }

    static func shapeText(_ c: Conv2d<Float>, _ h: Int, _ w: Int) -> String {
        "\(c.inChannels) -> \(c.outChannels), \(c.groups), \(c.stride), \(h)x\(w), \(c.kernel)x\(c.kernel)"
    }

    /// The profile table: seconds per step for each kind of work, and its share of the step.
    static func profileTable(steps: Int, total: Double) -> String {
        var lines = ["| work | ms/step | share |", "|---|---:|---:|"]
        var accounted = 0.0
        for kind in WorkKind.allCases {
            let t = Profile.seconds[kind.rawValue]
            accounted += t
            if t == 0 { continue }
            lines.append(String(format: "| %@ | %.1f | %.1f %% |", kind.label, 1000 * t / Double(steps), 100 * t / total))
        }
        lines.append(String(format: "| unaccounted | %.1f | %.1f %% |", 1000 * (total - accounted) / Double(steps), 100 * (total - accounted) / total))
        return lines.joined(separator: "\n")
    }
}

/// The ceiling `bench` compares the step with: a 1024 x 1024 x 1024 SGEMM on the current OpenBLAS
/// threads, its buffers made (and one product run) once, then timed on demand between the steps.
/// A machine shared with other work drifts by 5-25 % within a minute here, so a ceiling timed
/// once after the steps could fall on a faster or slower moment than the steps did.
final class SGEMMProbe {
    static let size = 1024
    /// Samples taken after the last step, so that one timed step still gets a median of several.
    static let samplesAfter = 3
    let a = Buffer<Float>(count: size * size), b = Buffer<Float>(count: size * size), c = Buffer<Float>(count: size * size)
    /// GFLOP/s of each product timed.
    private(set) var samples: [Double] = []

    init() {
        for i in 0..<(Self.size * Self.size) { a.base[i] = Float(i % 7) * 1e-3; b.base[i] = Float(i % 5) * 1e-3 }
        _ = time()  // touches c and OpenBLAS's buffers
    }

    /// Times one product and keeps its rate.
    func sample() { samples.append(2 * Double(Self.size * Self.size * Self.size) / time() / 1e9) }

    private func time() -> Double {
        let t0 = Profile.now()
        Float.gemm(transA: false, transB: false, m: Self.size, n: Self.size, k: Self.size, alpha: 1, a: a.base, lda: Self.size,
                   b: b.base, ldb: Self.size, beta: 0, c: c.base, ldc: Self.size)
        return Profile.now() - t0
    }
}
