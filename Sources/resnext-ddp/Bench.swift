import ArgumentParser
import Foundation
import ResNeXt
import ResNeXtBench
import ResNeXtMPI
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
    @Option(
        name: .customLong("bucket-mb"), help: "Gradient allreduce bucket in MiB, reduced while the backward pass goes on; 0: one allreduce after it.")
    var bucketMB = TrainSettings.defaultBucketMebibytes
    @Option(name: .customLong("grad-dtype"), help: "What the gradients cross the network as: fp32, or bf16 (half the bytes).")
    var gradDtype = GradientPrecision.fp32
    @Option(
        name: .customLong("simulate-network"),
        help:
            "Add a simulated network of this many GB/s: each bucket also spends bytes / rate on one link, while the CPU computes (shows the overlap)."
    )
    var simulateNetwork: Double?
    @Flag(help: "Print one JSON object instead of text.")
    var json = false
    @Flag(help: "Print the time per kind of work (GEMM, im2col, batch norm, ...) over the timed steps.")
    var profile = false
    @Flag(
        help:
            "Then time each distinct grouped 3x3 convolution of the model, forward and backward, four ways: im2col + GEMM, the default (the direct kernel where it applies), direct including the weight gradient, and Winograd F(2x2,3x3) where it applies; then every distinct convolution on the default path, and their sum per step against SGEMM (the ceiling the convolutions put on the step). One process only."
    )
    var layers = false
    @Option(
        help: ArgumentHelp(
            "Time the steps with one of the engine's paths off and on in turn (off, on, on, off, off, ...; --steps each, after a warm-up step of each), in the same process, so that the machine's drift falls on both; print each setting's median. tuned: the default paths against those --tune-convolutions keeps.",
            valueName: Alternation.allCases.map(\.rawValue).joined(separator: "|")))
    var alternate: Alternation?
    @Option(
        help: ArgumentHelp(
            "Run every convolution on this path instead of the rules (openblas: every product through OpenBLAS).",
            valueName: ConvolutionPath.named.map(\.name).joined(separator: "|")))
    var path: String?
    @Flag(
        name: .customLong("tune-convolutions"),
        help:
            "Before the steps, time each distinct convolution on each of the engine's paths (own kernels or OpenBLAS) and keep the fastest where it beats the default by more than 5 %, as torch.backends.cudnn.benchmark; print the choices. All processes agree on them."
    )
    var tuneConvolutions = false

    var config: ResNeXtConfig { ResNeXtConfig(depth: model.depth, cardinality: model.cardinality, baseChannels: model.baseChannels) }

    func validate() throws {
        guard threads >= 1 else { throw ValidationError("--threads must be at least 1") }
        guard steps >= 1 else { throw ValidationError("--steps must be at least 1") }
        do { try TrainSettings.validateBucket(mebibytes: bucketMB) } catch { throw ValidationError("\(error)") }
        if let simulateNetwork, !(simulateNetwork > 0 && simulateNetwork.isFinite) {
            throw ValidationError("--simulate-network must be a positive rate in GB/s (got \(simulateNetwork))")
        }
        do { try ResNeXtConfig.validateBatch(batchSize, bnGroup: bnGroup) } catch { throw ValidationError("\(error)") }
        if tuneConvolutions && (layers || (alternate != nil && alternate != .tuned)) {
            throw ValidationError(
                "--tune-convolutions fixes each layer's path, which --layers and --alternate compare; use one of them (--alternate tuned times the tuned paths against the defaults)"
            )
        }
        if layers && alternate != nil { throw ValidationError("--layers and --alternate exclude each other") }
        if let path {
            guard ConvolutionPath(name: path) != nil else {
                throw ValidationError("--path \(path): expected one of \(ConvolutionPath.named.map(\.name).joined(separator: ", "))")
            }
            if tuneConvolutions || alternate == .tuned || layers {
                throw ValidationError(
                    "--path sets every layer's path, which --tune-convolutions, --alternate tuned and --layers choose or compare; use one of them")
            }
        }
        do { try config.validate() } catch { throw ValidationError("\(error)") }
    }

    func run() throws {
        var comm = makeCommunicator()
        defer { comm.finish() }
        guard batchSize % (comm.size * bnGroup) == 0 else {
            if comm.isRoot {
                FileHandleOutput.standardError.write(
                    "error: --batch-size \(batchSize) is not divisible by \(comm.size) processes x --bn-group \(bnGroup)\n")
            }
            throw ExitCode(1)
        }
        if layers && comm.size > 1 {
            if comm.isRoot { FileHandleOutput.standardError.write("error: --layers times single layers; run it in one process, without mpirun\n") }
            throw ExitCode(1)
        }
        if let simulateNetwork { comm = SimulatedLink(comm, bytesPerSecond: simulateNetwork * 1e9) }
        setBLASThreads(threads)
        let perRank = batchSize / comm.size
        let net: ResNeXt<Float>
        do { net = try ResNeXt<Float>(config, maxBatch: perRank) } catch { throw ValidationError("\(error)") }
        net.initialize(seed: seed)
        if let path = path.flatMap(ConvolutionPath.init(name:)) {
            for (conv, _, _) in net.convolutionInputs { conv.path = path }
        }
        var tuning: (choices: [ConvolutionTuner.Choice], seconds: Double)? = nil
        if tuneConvolutions || alternate == .tuned {
            let t0 = Profile.now()
            let choices = ConvolutionTuner.tune(net, n: perRank, seed: seed, agree: { comm.allreduceSum(&$0) })
            tuning = (choices, Profile.now() - t0)
        }
        let bench = StepBenchmark(
            net: net, comm: comm, batchSize: batchSize, bnGroup: bnGroup, steps: steps, seed: seed,
            bucketMB: bucketMB, precision: gradDtype, alternation: alternate, profile: profile, byLayer: layers)
        let t = bench.run()
        let median = t.medianStep, sgemm = t.medianSGEMM
        let imagesPerSecond = Double(batchSize) / median
        let gflops = 6 * Double(net.macsPerImage) * imagesPerSecond / 1e9
        let share = gflops / Double(comm.size) / sgemm
        let adjacentShares = t.adjacentShares(gigaflopsPerProcessStep: 6 * Double(net.macsPerImage) * Double(perRank) / 1e9)
        let adjacentShare = adjacentShares[adjacentShares.count / 2]
        var peaks = [Double](repeating: 0, count: comm.size)
        peaks[comm.rank] = Double(peakResidentBytes() ?? 0) / 1_048_576.0
        comm.allreduceSum(&peaks)
        guard comm.isRoot else { return }
        let peak = peaks.max() ?? 0
        let (off, on) = t.bySetting, pairs = t.pairRatios
        if json {
            var report = BenchReport(
                model: "\(config)", processes: comm.size, batch: batchSize, perProcessBatch: perRank, bnGroup: bnGroup,
                threads: threads, blasCore: blasCoreName, steps: steps, imagesPerS: imagesPerSecond, msPerStep: median * 1000,
                allreduceMs: t.medianCommunication * 1000, bucketMb: bucketMB, buckets: t.buckets, simulatedGbps: simulateNetwork,
                gflops: gflops, sgemmGflopsPerProcess: sgemm, stepShareOfSgemm: share, sgemmSamples: t.sgemm.count,
                sgemmMin: t.sgemm.min()!, sgemmMax: t.sgemm.max()!, stepShareOfAdjacentSgemm: adjacentShare, peakMibPerProcess: peak)
            report.addGradients(gradDtype, mebibytes: gradientMebibytes(net))
            if path != nil { report.paths = net.convolutionPaths }
            if let tuning { report.addTuning(paths: net.convolutionPaths, seconds: tuning.seconds) }
            if let alternate {
                report.addAlternation(alternate.rawValue, off: off[off.count / 2], on: on[on.count / 2], pairMedian: pairs[pairs.count / 2])
            }
            print(try report.json())
        } else {
            printText(t, net: net, comm: comm, tuning: tuning, peak: peak, share: share, adjacentShares: adjacentShares)
        }
        if profile { print(Profile.table(steps: t.steps.count, total: t.steps.reduce(0, +))) }
        if layers {
            print(
                LayerTable.render(
                    net, n: perRank, repeats: max(steps, 3), seed: seed, sgemm: sgemm, steps: t.steps.count,
                    step: median, share: share, inStep: t.layerSeconds))
        }
    }

    /// The bytes of one step's gradient allreduce, in MiB.
    func gradientMebibytes(_ net: ResNeXt<Float>) -> Double { Double(net.store.grads.count * gradDtype.bytes) / 1_048_576 }

    func printText(
        _ t: StepBenchmark.Timings, net: ResNeXt<Float>, comm: Communicator,
        tuning: (choices: [ConvolutionTuner.Choice], seconds: Double)?, peak: Double, share: Double, adjacentShares: [Double]
    ) {
        let perRank = batchSize / comm.size, median = t.medianStep, imagesPerSecond = Double(batchSize) / median
        let gflops = 6 * Double(net.macsPerImage) * imagesPerSecond / 1e9
        let (off, on) = t.bySetting, pairs = t.pairRatios
        print(
            "\(config), \(comm.size) process(es) x \(perRank) images = batch \(batchSize), BN group \(bnGroup), \(threads) thread(s) each (OpenBLAS \(blasCoreName)), \(net.store.parameterCount) parameters, \(String(format: "%.3f", Double(net.macsPerImage) / 1e9)) GMAC/image"
        )
        print(
            String(
                format:
                    "median of %d steps: %.1f ms/step (waiting for allreduce %.2f ms; %.1f MiB of %@ gradients in %d bucket(s)), %.2f images/s, %.1f GFLOP/s effective, peak memory %.0f MiB per process",
                t.steps.count, median * 1000, t.medianCommunication * 1000, gradientMebibytes(net), gradDtype.rawValue, t.buckets,
                imagesPerSecond, gflops, peak))
        print(
            String(
                format:
                    "SGEMM 1024x1024x1024 between the steps: %.1f GFLOP/s per process (median of %d, %.1f-%.1f); the step runs at %.0f %% of it (each step against the SGEMM right after it: median %.0f %%, %.0f-%.0f %%)",
                t.medianSGEMM, t.sgemm.count, t.sgemm.min()!, t.sgemm.max()!, 100 * share,
                100 * adjacentShares[adjacentShares.count / 2], 100 * adjacentShares.first!, 100 * adjacentShares.last!))
        if let path { print("--path \(path): every convolution on that path") }
        print(Startup.blasKernelsLine)
        if !tuneConvolutions && alternate == nil && !layers, let hint = untunedAVX512Hint { print(hint) }
        if let tuning { print(ConvolutionTuner.report(tuning.choices, processes: comm.size, seconds: tuning.seconds)) }
        if let alternate {
            let (offMedian, onMedian) = (off[off.count / 2], on[on.count / 2])
            print(
                String(
                    format:
                        "--alternate %@ (%@), %d steps each in the same run: off %.1f ms/step (%.1f-%.1f), on %.1f ms/step (%.1f-%.1f); on/off %.3f; on/off of the %d adjacent pairs: median %.3f (%.3f-%.3f)",
                    alternate.rawValue, alternate.settings, steps, offMedian * 1000, off[0] * 1000, off.last! * 1000,
                    onMedian * 1000, on[0] * 1000, on.last! * 1000, onMedian / offMedian,
                    pairs.count, pairs[pairs.count / 2], pairs[0], pairs.last!))
        }
    }
}

extension Alternation: ExpressibleByArgument {}
