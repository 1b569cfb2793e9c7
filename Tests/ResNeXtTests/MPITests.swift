import Foundation
import ResNeXt
import ResNeXtBench
import ResNeXtTrain
import Testing

/// Runs the executable under real `mpirun` (as root it needs Open MPI's two permission variables;
/// more ranks than cores need --oversubscribe). Every run is bounded by `timeout`, so a rank left
/// hanging fails the test instead of stalling the suite.
enum MPI {
    static func run(_ np: Int, _ arguments: [String], environment: [String: String] = [:], unset: [String] = [],
                    program: String = CLI.executable, seconds: Int = 180) throws -> CLI.Result {
        var env = environment
        env["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
        env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
        env["OMPI_MCA_rmaps_base_oversubscribe"] = "1"
        return try CLI.run(["timeout", "\(seconds)", "mpirun", "-np", "\(np)", "--oversubscribe", program] + arguments,
                           executable: "/usr/bin/env", environment: env, unset: unset)
    }

    /// Multiple-program launch: one argument list per rank.
    static func runPerRank(_ perRank: [[String]], seconds: Int = 180) throws -> CLI.Result {
        var args = ["timeout", "\(seconds)", "mpirun", "--oversubscribe"]
        for (i, a) in perRank.enumerated() {
            if i > 0 { args.append(":") }
            args += ["-np", "1", CLI.executable] + a
        }
        return try CLI.run(args, executable: "/usr/bin/env", environment: [
            "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"])
    }
}

/// The largest relative L2 difference over the float tensors of two model files (those whose
/// names pass `include`).
func worstDifference(_ a: String, _ b: String, include: (String) -> Bool = { _ in true }) throws -> (Double, String) {
    let x = try SafeTensorsFile(path: a), y = try SafeTensorsFile(path: b)
    var worst = (0.0, "")
    for name in x.names where x.tensors[name]!.dtype == .f32 && include(name) {
        let e = relativeError(try x.floats(name), try y.doubles(name))
        if e > worst.0 { worst = (e, name) }
    }
    return worst
}

@Suite(.serialized) struct MPITests {
    static let tiny = ["--depth", "11", "--cardinality", "2", "--base-channels", "2"]

    /// The case of the P-independence tests: BN groups of 8, 4 per step, at the paper's rate for
    /// this batch (0.1 x 32/128).
    static let pCase = ["--depth", "11", "--cardinality", "2", "--base-channels", "4", "--batch-size", "32",
                        "--bn-group", "8", "--epochs", "2", "--seed", "3"]
    static let pTolerance = 1e-5

    /// How far the state after one step moves when every gradient is moved by one float32
    /// rounding before the update: what another process count does (it sums each gradient in
    /// another order; the forward pass is the same). Measured in this process on the case's model,
    /// data, batch, BN groups and rate: the largest relative change over tensors and four draws.
    static func gradientRoundingSensitivity(data: String, augment: Bool) throws -> Double {
        let config = ResNeXtConfig(depth: 11, cardinality: 2, baseChannels: 4)
        let (batch, bnGroup, seed) = (32, 8, UInt64(3))
        let train = try CIFAR10(directory: data, needTest: false).train
        let pipeline = ImagePipeline(augment: augment, seed: seed)
        var images = [Float](repeating: 0, count: batch * CIFAR10.imageBytes)
        images.withUnsafeMutableBufferPointer { out in
            for i in 0..<batch { pipeline.image(train, index: i, epoch: 0, into: out.baseAddress! + i * CIFAR10.imageBytes) }
        }
        let labels = (0..<batch).map { train.label($0) }
        func state(noise: Double, draw: UInt64) throws -> [String: [Double]] {
            let net = try ResNeXt<Float>(config, maxBatch: batch)
            net.initialize(seed: seed)
            var rng = SplitMix64(seed: draw)
            net.trainStep(images: images, labels: labels, n: batch, bnGroup: bnGroup, optimizer: SGD(learningRate: 0.1 * 32 / 128)) {
                net.moveGradients(byRelativeNoise: noise, &rng)
            }
            return net.stateByName
        }
        let plain = try state(noise: 0, draw: 0)
        var worst = 0.0
        for draw in UInt64(1)...4 {
            for (name, v) in try state(noise: 0x1p-24, draw: draw) { worst = max(worst, relativeError(v, plain[name]!)) }
        }
        return worst
    }

    /// The same seed, batch and BN groups give the same training at P = 1, 2, 4, without and with
    /// augmentation and shuffling: only the summation order differs, so to relative 1e-5 per tensor.
    ///
    /// What is compared is what a change of summation order cannot move further. After one step,
    /// every parameter and momentum buffer (the forward pass is the same at every P; the case's
    /// measured sensitivity to one rounding of the gradients must be a tenth of the tolerance).
    /// After two epochs (4 steps, a shuffle and augmentation per epoch, the sharded evaluation) at
    /// a small rate (0.001), what the forward passes give: BN running statistics, per-epoch train
    /// loss, test accuracy. Not the parameters after several steps: the first step's rounding
    /// differences reach the next forward pass, a ReLU input within that distance of zero flips
    /// its mask, and the gradients above it move by 1e-4 to 1e-2 (with a ResNeXt's 10^6 ReLU
    /// inputs per step such an input is likely: on this case, at rates 0.025 to 1e-4, with
    /// OpenBLAS's FMA and Prescott kernels, in 1 to 6 of 24 runs). At 0.001 what follows moves the
    /// next forward passes by less than 1e-6; at 0.025 the running means by up to 2.3e-5.
    @Test(arguments: [false, true]) func resultDoesNotDependOnProcessCount(augmented: Bool) throws {
        let data = try SyntheticCIFAR.folder(train: [("data_batch_1.bin", 64)], test: 12)
        let sensitivity = try Self.gradientRoundingSensitivity(data: data, augment: augmented)
        #expect(sensitivity < Self.pTolerance / 10, "the case is ill-conditioned here: one float32 rounding of the gradients moves its first step by \(sensitivity), more than a tenth of \(Self.pTolerance)")
        print("P-independence case (augmented: \(augmented)): one rounding of the gradients moves the first step by \(sensitivity)")
        var args = ["train"] + Self.pCase + ["--data-dir", data]
        if !augmented { args += ["--no-augment", "--no-shuffle"] }
        var oneStep: [Int: String] = [:], twoEpochs: [Int: String] = [:]
        for p in [1, 2, 4] {
            for steps in [1, 4] {
                let out = try temporaryDirectory()
                let r = try MPI.run(p, args + ["--max-steps", "\(steps)", "--outdir", out] + (steps == 1 ? [] : ["--lr", "0.001"]))
                #expect(r.status == 0, "P=\(p): \(r.output)")
                #expect(r.stdout.contains("\(p) process(es) x \(32 / p) images = batch 32; \(4 / p) BN group(s) of 8 per process"), "\(r.stdout)")
                let config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/config.json"))) as! [String: Any]
                #expect(config["processes"] as? Int == p && config["per_process_batch"] as? Int == 32 / p)
                if steps == 1 { oneStep[p] = out } else { twoEpochs[p] = out }
            }
        }
        for p in [2, 4] {
            // one step: every tensor of the checkpoint (parameters, BN statistics, momentum)
            let (worst, name) = try worstDifference(oneStep[p]! + "/checkpoint.safetensors", oneStep[1]! + "/checkpoint.safetensors")
            #expect(worst < Self.pTolerance, "P=\(p) vs P=1 after one step: \(name) differs by \(worst) (one rounding of the gradients moves it by \(sensitivity))")
            // two epochs: what the forward passes give
            let (stats, statName) = try worstDifference(twoEpochs[p]! + "/model.safetensors", twoEpochs[1]! + "/model.safetensors") { $0.contains(".running_") }
            #expect(stats < Self.pTolerance, "P=\(p) vs P=1 after two epochs: \(statName) differs by \(stats)")
            // the evaluation is sharded, its sums exact: the same test accuracy
            let a = try String(contentsOfFile: twoEpochs[p]! + "/metrics.jsonl", encoding: .utf8)
            let b = try String(contentsOfFile: twoEpochs[1]! + "/metrics.jsonl", encoding: .utf8)
            let ra = try a.split(separator: "\n").map { try JSONDecoder().decode(EpochMetrics.self, from: Data($0.utf8)) }
            let rb = try b.split(separator: "\n").map { try JSONDecoder().decode(EpochMetrics.self, from: Data($0.utf8)) }
            #expect(ra.count == 2 && ra.map(\.testAccuracy) == rb.map(\.testAccuracy), "P=\(p)")
            #expect(zip(ra, rb).allSatisfy { abs($0.trainLoss - $1.trainLoss) < Self.pTolerance * abs($1.trainLoss) }, "P=\(p)")
        }
    }

    /// The same run twice (same process count, threads, kernels): the same bits, at 1 and 2 processes.
    @Test func sameRunTwiceIsBitwiseEqual() throws {
        let data = try SyntheticCIFAR.folder(train: [("data_batch_1.bin", 64)], test: 12)
        for p in [1, 2] {
            var files: [SafeTensorsFile] = []
            for _ in 0..<2 {
                let out = try temporaryDirectory()
                let r = try MPI.run(p, ["train"] + Self.pCase + ["--data-dir", data, "--max-steps", "4", "--outdir", out])
                #expect(r.status == 0, "P=\(p): \(r.output)")
                files.append(try SafeTensorsFile(path: out + "/checkpoint.safetensors"))
            }
            // every tensor (parameters, statistics, momentum); the metadata names the run's folders
            #expect(files[0].names == files[1].names && !files[0].names.isEmpty)
            for name in files[0].names where files[0].tensors[name]!.dtype == .f32 {
                #expect(try files[0].floats(name).map(\.bitPattern) == files[1].floats(name).map(\.bitPattern), "P=\(p): \(name) differs")
            }
        }
    }

    /// The fixture-exact run under mpirun -np 2 and -np 4, for every fixture whose batch allows it.
    @Test func fixtureExactRunsUnderMPI() throws {
        var ran = 0
        for name in try Fixtures.modelFiles() {
            let c = try ModelCase(name)
            for p in [2, 4] where c.batch % (p * c.bnGroup) == 0 {
                try TrainerCLITests.checkFixtureRun(c, name: name) { args in try MPI.run(p, args) }
                ran += 1
            }
        }
        #expect(ran >= 1, "no public fixture allows 2 processes")
    }

    @Test func batchNotDivisibleIsRefusedOnceBeforeAnyWork() throws {
        let data = try SyntheticCIFAR.folder(train: [("data_batch_1.bin", 32)], test: 8)
        let out = try temporaryDirectory()
        let r = try MPI.run(4, ["train"] + Self.tiny + ["--batch-size", "24", "--bn-group", "4", "--data-dir", data, "--outdir", out])
        #expect(r.status != 0)
        let lines = r.stderr.split(separator: "\n").filter { $0.hasPrefix("error") }
        #expect(lines == ["error: --batch-size 24 is not divisible by 4 processes x --bn-group 4: each process needs a whole number of BN groups (choose a batch that is a multiple of 16)"], "\(r.output)")
        #expect(!FileManager.default.fileExists(atPath: out + "/config.json"), "no work done")
    }

    @Test func fewerTestImagesThanRanks() throws {
        let data = try SyntheticCIFAR.folder(train: [("data_batch_1.bin", 32)], test: 1)
        let r = try MPI.run(2, ["train"] + Self.tiny + ["--batch-size", "8", "--bn-group", "4", "--data-dir", data,
                                                         "--outdir", try temporaryDirectory()])
        #expect(r.status != 0)
        let lines = r.stderr.split(separator: "\n").filter { $0.hasPrefix("error") }
        #expect(lines.count == 1 && lines[0].contains("1 test images for 2 processes"), "\(r.output)")
    }

    /// A failure on one rank during training ends the whole job with that rank's message.
    @Test func oneRankFailingAbortsTheJob() throws {
        let data = try SyntheticCIFAR.folder(train: [("data_batch_1.bin", 64)], test: 8)
        let r = try MPI.run(2, ["--fault", "rank=1,step=3,kind=error"] + Self.tiny + ["--epochs", "50", "--batch-size", "8", "--bn-group", "4",
                                                                                   "--data-dir", data, "--outdir", try temporaryDirectory()],
                            program: CLI.built("resnext-ddp-faults"), seconds: 120)
        #expect(r.status != 0 && r.status != 124, "exit \(r.status) (124 = hung): \(r.output)")
        #expect(r.stderr.contains("error (rank 1 of 2): injected fault at step 3"), "\(r.output)")
    }

    /// A rank that cannot read its data stops every rank at start-up; its message is printed once.
    @Test func oneRankWithBadDataStopsAllAtStartup() throws {
        let good = try SyntheticCIFAR.folder(train: [("data_batch_1.bin", 16)], test: 4)
        let bad = try SyntheticCIFAR.folder(train: [("data_batch_1.bin", 16)], test: 4)
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: bad + "/data_batch_1.bin"))
        let out = try temporaryDirectory()
        let common = ["train"] + Self.tiny + ["--batch-size", "8", "--bn-group", "4", "--outdir", out]
        let r = try MPI.runPerRank([common + ["--data-dir", good], common + ["--data-dir", bad]], seconds: 120)
        #expect(r.status != 0 && r.status != 124, "exit \(r.status): \(r.output)")
        let lines = r.stderr.split(separator: "\n").filter { $0.hasPrefix("error") }
        #expect(lines == ["error: \(bad)/data_batch_1.bin: 3 bytes is not a whole number of 3073-byte CIFAR-10 records (expected a multiple of 3073, 30730000 for a full batch file); the file is truncated or not CIFAR-10 binary"], "\(r.output)")
    }

    /// Replicas that drift apart are caught by the checksum comparison, naming ranks and step.
    @Test func replicaMismatchIsDetected() throws {
        let data = try SyntheticCIFAR.folder(train: [("data_batch_1.bin", 64)], test: 8)
        let r = try MPI.run(2, ["--fault", "rank=1,step=2,kind=diverge"] + Self.tiny + ["--epochs", "2", "--batch-size", "8", "--bn-group", "4",
                                                                                     "--check-every", "1", "--data-dir", data,
                                                                                     "--outdir", try temporaryDirectory()],
                            program: CLI.built("resnext-ddp-faults"), seconds: 120)
        #expect(r.status != 0)
        #expect(r.stderr.contains("error: replica check failed at step 2: rank(s) 1 hold different weights or BN buffers than rank 0"), "\(r.output)")
    }

    /// Resuming under mpirun is exact too; every rank reads the checkpoint.
    @Test func resumeUnderMPIIsExact() throws {
        let data = try SyntheticCIFAR.folder(train: [("data_batch_1.bin", 32)], test: 8)
        let a = try temporaryDirectory(), b = try temporaryDirectory()
        let common = ["train"] + Self.tiny + ["--epochs", "2", "--batch-size", "8", "--bn-group", "4", "--data-dir", data]
        #expect(try MPI.run(2, common + ["--outdir", a]).status == 0)
        #expect(try MPI.run(2, common + ["--outdir", b, "--max-steps", "5"]).status == 0)
        let r = try MPI.run(2, common + ["--outdir", b, "--resume", b])
        #expect(r.status == 0, "\(r.output)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: a + "/model.safetensors")) == Data(contentsOf: URL(fileURLWithPath: b + "/model.safetensors")))
    }

    /// Gradients reduced in many small buckets during the backward pass give the same model as
    /// one allreduce after it: bit for bit with 2 processes (a sum of two is exact in any order),
    /// to 1e-6 with 3 (Open MPI may pick another algorithm per message size).
    @Test func bucketedAllreduceEqualsOneAllreduce() throws {
        let data = try SyntheticCIFAR.folder(train: [("data_batch_1.bin", 48)], test: 12)
        for p in [2, 3] {
            let args = ["train"] + Self.tiny + ["--epochs", "1", "--batch-size", "\(p * 8)", "--bn-group", "4", "--max-steps", "3",
                                                "--data-dir", data, "--seed", "4"]
            var outs: [String] = []
            for bucket in ["0", "0.002", "25"] {
                let out = try temporaryDirectory()
                let r = try MPI.run(p, args + ["--outdir", out, "--bucket-mb", bucket])
                #expect(r.status == 0, "P=\(p) --bucket-mb \(bucket): \(r.output)")
                outs.append(out + "/model.safetensors")
            }
            for other in outs.dropFirst() {
                if p == 2 {
                    #expect(try Data(contentsOf: URL(fileURLWithPath: other)) == Data(contentsOf: URL(fileURLWithPath: outs[0])))
                } else {
                    let (worst, name) = try worstDifference(other, outs[0])
                    #expect(worst < 1e-6, "P=\(p): \(name) differs by \(worst)")
                }
            }
        }
        let r = try MPI.run(2, ["bench"] + Self.tiny + ["--batch-size", "8", "--bn-group", "4", "--steps", "1", "--bucket-mb", "0.002", "--json"])
        #expect(r.status == 0, "\(r.output)")
        let buckets = r.stdout.split(separator: ",").first { $0.hasPrefix("\"buckets\":") }.flatMap { Int($0.dropFirst(10)) }
        #expect((buckets ?? 0) > 1, "bench reported \(String(describing: buckets)) buckets: \(r.stdout)")
    }

    /// Under mpirun, `bench --profile` shows the wait for the slower rank (the barrier before the
    /// allreduce) on its own row rather than leaving it in "unaccounted".
    @Test func benchProfileNamesTheWait() throws {
        let r = try MPI.run(2, ["bench"] + Self.tiny + ["--batch-size", "8", "--bn-group", "4", "--steps", "1", "--profile"])
        #expect(r.status == 0, "\(r.output)")
        #expect(r.stdout.contains("| waiting for the slower rank (bench's barrier before the allreduce) |"), "\(r.stdout)")
    }

    /// `bench` times its ceiling, a 1024^3 SGEMM, after each timed step and three times after
    /// the last: the line and the JSON give the samples' median and range, the step's share of
    /// the median, and the median share of each step against the SGEMM right after it.
    @Test func benchTimesSGEMMBetweenSteps() throws {
        let args = ["bench"] + Self.tiny + ["--batch-size", "8", "--bn-group", "4", "--steps", "2"]
        let r = try CLI.run(args)
        #expect(r.status == 0, "\(r.output)")
        let line = r.stdout.split(separator: "\n").first { $0.hasPrefix("SGEMM 1024x1024x1024 between the steps: ") }
        // R GFLOP/s per process (median of N, LO-HI); the step runs at S % of it (...: median A %, LO-HI %)
        let numbers = line.map { $0.split(whereSeparator: { " (),;-%:".contains($0) }).compactMap { Double($0) } } ?? []
        #expect(numbers.count == 8, "\(r.stdout)")  // 1024x1024x1024 is no number
        if numbers.count == 8 {
            let (rate, samples, lo, hi, share, adjacent, adjacentLo, adjacentHi) =
                (numbers[0], numbers[1], numbers[2], numbers[3], numbers[4], numbers[5], numbers[6], numbers[7])
            #expect(samples == 5 && lo > 0 && lo <= rate && rate <= hi, "\(line!)")
            #expect(share > 0 && adjacentLo <= adjacent && adjacent <= adjacentHi, "\(line!)")
        }
        let json = try CLI.run(args + ["--json"])
        #expect(json.status == 0, "\(json.output)")
        let field = { (name: String) in
            json.stdout.split(separator: ",").first { $0.hasPrefix("\"\(name)\":") }.flatMap { Double($0.dropFirst(name.count + 3)) }
        }
        #expect(field("sgemm_samples") == 5, "\(json.stdout)")
        if let rate = field("sgemm_gflops_per_process"), let lo = field("sgemm_min"), let hi = field("sgemm_max") {
            #expect(lo <= rate && rate <= hi, "\(json.stdout)")
        } else { Issue.record("no SGEMM figures: \(json.stdout)") }
        #expect((field("step_share_of_adjacent_sgemm") ?? 0) > 0, "\(json.stdout)")
    }

    /// `bench --alternate` times each setting of a switch in the same run: the line names both
    /// medians, each within its steps' range, and their ratio; the JSON carries both medians and
    /// stays one object.
    @Test func benchAlternates() throws {
        let args = ["bench"] + Self.tiny + ["--batch-size", "8", "--bn-group", "4", "--steps", "3", "--alternate", "bn-on-read"]
        let r = try CLI.run(args)
        #expect(r.status == 0, "\(r.output)")
        #expect(r.stdout.contains("median of 6 steps: "), "\(r.stdout)")
        let prefix = "--alternate bn-on-read (\(Alternation.bnOnRead.settings)), 3 steps each in the same run: "
        let line = r.stdout.split(separator: "\n").first { $0.hasPrefix(prefix + "off ") }
        // off M ms/step (LO-HI), on M ms/step (LO-HI); on/off R; on/off of the P adjacent pairs: median M (LO-HI)
        let numbers = line.map { $0.dropFirst(prefix.count).split(whereSeparator: { " (),;-".contains($0) }).compactMap { Double($0) } } ?? []
        // the seven figures, then the pairs (3 steps each: 3 pairs)
        #expect(numbers.count == 11, "\(r.stdout)")
        if numbers.count == 11 {
            let (off, offLo, offHi, on, onLo, onHi, ratio) = (numbers[0], numbers[1], numbers[2], numbers[3], numbers[4], numbers[5], numbers[6])
            #expect(off > 0 && offLo <= off && off <= offHi && onLo <= on && on <= onHi, "\(line!)")
            let (pairs, pairMedian, pairLo, pairHi) = (numbers[7], numbers[8], numbers[9], numbers[10])
            #expect(pairs == 3 && pairLo <= pairMedian && pairMedian <= pairHi && pairLo > 0, "\(line!)")
            // every pair's ratio lies within what the two settings' ranges allow (printed to 0.1 ms)
            #expect(pairLo >= (onLo - 0.05) / (offHi + 0.05) - 0.0005 && pairHi <= (onHi + 0.05) / (offLo - 0.05) + 0.0005, "\(line!)")
            // the medians are printed to 0.1 ms, the ratio to 0.001
            let rounding = on / off * (0.05 / on + 0.05 / off) + 0.0005
            #expect(abs(ratio - on / off) <= rounding, "\(line!)")
        }
        let json = try CLI.run(args + ["--json"])
        #expect(json.status == 0 && json.stdout.contains("\"alternate\":\"bn-on-read\""), "\(json.output)")
        for key in ["ms_per_step_off", "ms_per_step_on", "on_off_pair_median"] {
            #expect(json.stdout.contains("\"\(key)\":"), "\(key): \(json.output)")
        }
        #expect(!json.stdout.contains("--alternate"), "one JSON object only: \(json.stdout)")
    }

    /// `bench --tune-convolutions` under mpirun: a table with one row per distinct convolution,
    /// the path kept among those tried; the JSON names the paths kept. With --alternate (which
    /// toggles a path the tuning fixes) it refuses in one line.
    @Test func benchTunesConvolutions() throws {
        let args = ["bench"] + Self.tiny + ["--batch-size", "8", "--bn-group", "4", "--steps", "1", "--tune-convolutions"]
        let r = try MPI.run(2, args)
        #expect(r.status == 0, "\(r.output)")
        #expect(r.stdout.contains("--tune-convolutions: "), "\(r.stdout)")
        let rows = r.stdout.split(separator: "\n").filter { $0.hasPrefix("| conv |") || $0.hasPrefix("| stage") }
        #expect(rows.count >= 6, "\(r.stdout)")
        for row in rows {
            let cells = row.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
            #expect(cells.count == 5 && cells[3].contains(cells[4]), "the path kept is one of those tried: \(row)")
        }
        let json = try MPI.run(2, args + ["--json"])
        #expect(json.status == 0 && json.stdout.contains("\"tuned_paths\":\""), "\(json.output)")
        #expect(json.stdout.contains("\"blas_core\":\"\(blasCoreName)\""), "the JSON names OpenBLAS's kernels: \(json.output)")
        let bad = try CLI.run(args + ["--alternate", "direct3x3"])
        #expect(bad.status != 0 && bad.stderr.contains("--tune-convolutions fixes each layer's path"), "\(bad.output)")
        // --alternate tuned: the default paths against the tuned ones, step by step, after the table
        let alternating = try MPI.run(2, ["bench"] + Self.tiny + ["--batch-size", "8", "--bn-group", "4", "--steps", "2", "--alternate", "tuned"])
        #expect(alternating.status == 0, "\(alternating.output)")
        #expect(alternating.stdout.contains("--tune-convolutions: ") && alternating.stdout.contains("median of 4 steps: "), "\(alternating.stdout)")
        #expect(alternating.stdout.contains("--alternate tuned (off: the default paths, on: the tuned ones), 2 steps each in the same run: off "), "\(alternating.stdout)")
    }

    /// `bench --layers` times each distinct grouped 3x3 convolution three ways (depth 11: one per
    /// stage, 3 shapes), in one process; under mpirun it refuses in one line.
    @Test func benchLayers() throws {
        let args = ["bench"] + Self.tiny + ["--batch-size", "8", "--bn-group", "4", "--steps", "1", "--layers"]
        let one = try CLI.run(args)
        #expect(one.status == 0, "\(one.output)")
        let tables = one.stdout.components(separatedBy: "\n\n")
        #expect(tables.count == 3, "\(one.stdout)")
        // the paths of each grouped 3x3 shape (3) and of each 1x1 stride-1 shape (OpenBLAS, ours)
        let rows = tables[0].split(separator: "\n").filter { $0.hasPrefix("| stage") }
        let grouped = rows.filter { $0.contains("3x3 |") }, pointwise = rows.filter { $0.contains("1x1 |") }
        #expect(grouped.count == 9 && rows.count == grouped.count + pointwise.count, "\(one.stdout)")
        #expect(Set(grouped.map { $0.split(separator: "|")[2] }).count == 3, "\(one.stdout)")
        let pointwiseShapes = Set(pointwise.map { $0.split(separator: "|")[1] })
        #expect(!pointwiseShapes.isEmpty && pointwise.count == 2 * pointwiseShapes.count, "\(one.stdout)")
        #expect(pointwise.filter { $0.contains("| OpenBLAS GEMM |") }.count == pointwiseShapes.count, "\(one.stdout)")
        // every convolution: one row per distinct shape, the layer counts adding up to the
        // model's convolutions (stem, 3 per block, 3 projection shortcuts), and the per-step sum
        let all = tables[1].split(separator: "\n").filter { $0.hasPrefix("| conv") || $0.hasPrefix("| stage") }
        let counts = all.map { Int($0.split(separator: "|")[2].trimmingCharacters(in: .whitespaces)) ?? 0 }
        let perStep = all.map { Double($0.split(separator: "|")[5].trimmingCharacters(in: .whitespaces)) ?? .nan }
        let layers: Int = counts.reduce(0, +), expected = 1 + 3 * 3 + 3
        #expect(layers == expected, "\(one.stdout)")
        let total = one.stdout.split(separator: "\n").first { $0.hasPrefix("all convolutions, each on its own: ") }
        let stated: Double? = total.flatMap { Double($0.split(separator: " ")[6]) }
        let summed: Double = perStep.reduce(0, +)
        let rounding: Double = 0.05 * Double(all.count) + 0.1
        #expect(stated != nil && abs(stated! - summed) <= rounding, "\(one.stdout)")
        // the same layers within the step: no negative time, a positive total that the rows sum
        // to, and that total part of the step
        let inStep = all.map { Double($0.split(separator: "|")[7].trimmingCharacters(in: .whitespaces)) ?? .nan }
        #expect(inStep.allSatisfy { $0 >= 0 } && inStep.reduce(0, +) > 0, "\(one.stdout)")
        let inStepTotal = one.stdout.split(separator: "\n").first { $0.hasPrefix("the same convolutions within the steps: ") }
        let statedInStep: Double? = inStepTotal.flatMap { Double($0.split(separator: " ")[6]) }
        #expect(statedInStep != nil && abs(statedInStep! - inStep.reduce(0, +)) <= rounding, "\(one.stdout)")
        let step = one.stdout.split(separator: "\n").first { $0.hasPrefix("median of ") }
        let stepMs: Double? = step.flatMap { Double($0.split(separator: " ")[4]) }
        #expect(stepMs != nil && statedInStep != nil && statedInStep! < stepMs!, "\(one.stdout)")
        // by kind: the stem, 1x1 stride 1, 1x1 stride 2 (shortcuts), 3x3 grouped stride 1 and 2,
        // with every layer once, the shares of the arithmetic adding up to 100 % and the in-step
        // times to the in-step total
        let kinds = tables[2].split(separator: "\n").filter { $0.hasPrefix("| ") && !$0.hasPrefix("| kind") }
            .map { $0.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) } }
        #expect(Set(kinds.map { $0[0] }) == ["stem (3x3, no input gradient)", "1x1, stride 1", "1x1, stride 2 (projection shortcuts)",
                                             "3x3 grouped, stride 1", "3x3 grouped, stride 2"], "\(one.stdout)")
        #expect(kinds.map { Int($0[1]) ?? 0 }.reduce(0, +) == expected, "\(one.stdout)")
        let shares = kinds.map { Double($0[2].replacingOccurrences(of: " %", with: "")) ?? .nan }
        #expect(abs(shares.reduce(0, +) - 100) <= Double(kinds.count), "\(one.stdout)")
        let kindMs = kinds.map { Double($0[3]) ?? .nan }
        #expect(statedInStep != nil && abs(kindMs.reduce(0, +) - statedInStep!) <= rounding, "\(one.stdout)")
        // the budget: 70 % of the SGEMM as a step, i.e. the step scaled by its own share of the
        // SGEMM over 0.7 (from the effective GFLOP/s of the median line and the SGEMM line)
        let budget = one.stdout.split(separator: "\n").first { $0.hasPrefix("70 % of the SGEMM above is a step of ") }
        let targetMs: Double? = budget.flatMap { Double($0.split(separator: " ")[10]) }
        let sgemmLine = one.stdout.split(separator: "\n").first { $0.hasPrefix("SGEMM 1024x1024x1024 between the steps: ") }
        let sgemm: Double? = sgemmLine.flatMap { Double($0.split(separator: " ")[5]) }
        let effective: Double? = step.flatMap { line in
            let words = line.split(separator: " ")
            return words.firstIndex(of: "effective,").flatMap { Double(words[$0 - 2]) }
        }
        if let targetMs, let sgemm, let effective, let stepMs {
            let expectedMs = stepMs * effective / sgemm / 0.7
            #expect(abs(targetMs - expectedMs) <= 0.05 * expectedMs + 0.15, "\(one.stdout)")
        } else {
            Issue.record("budget line, SGEMM line or median line unreadable: \(one.stdout)")
        }
        let two = try MPI.run(2, args)
        #expect(two.status != 0)
        #expect(two.output.contains("error: --layers times single layers; run it in one process, without mpirun"), "\(two.output)")
    }
}
