import Foundation
import ResNeXt
import ResNeXtTrain
import Testing

@Suite(.serialized) struct MPITests {
    static let tiny = ["--depth", "11", "--cardinality", "2", "--base-channels", "2"]

    /// The case of the P-independence tests: BN groups of 8, 4 per step, at the paper's rate for
    /// this batch (0.1 x 32/128).
    static let pCase = [
        "--depth", "11", "--cardinality", "2", "--base-channels", "4", "--batch-size", "32",
        "--bn-group", "8", "--epochs", "2", "--seed", "3",
    ]
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
        #expect(
            sensitivity < Self.pTolerance / 10,
            "the case is ill-conditioned here: one float32 rounding of the gradients moves its first step by \(sensitivity), more than a tenth of \(Self.pTolerance)"
        )
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
            #expect(
                worst < Self.pTolerance,
                "P=\(p) vs P=1 after one step: \(name) differs by \(worst) (one rounding of the gradients moves it by \(sensitivity))")
            // two epochs: what the forward passes give
            let (stats, statName) = try worstDifference(twoEpochs[p]! + "/model.safetensors", twoEpochs[1]! + "/model.safetensors") {
                $0.contains(".running_")
            }
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
        #expect(
            lines == [
                "error: --batch-size 24 is not divisible by 4 processes x --bn-group 4: each process needs a whole number of BN groups (choose a batch that is a multiple of 16)"
            ], "\(r.output)")
        #expect(!FileManager.default.fileExists(atPath: out + "/config.json"), "no work done")
    }

    @Test func fewerTestImagesThanRanks() throws {
        let data = try SyntheticCIFAR.folder(train: [("data_batch_1.bin", 32)], test: 1)
        let r = try MPI.run(
            2,
            ["train"] + Self.tiny + [
                "--batch-size", "8", "--bn-group", "4", "--data-dir", data,
                "--outdir", try temporaryDirectory(),
            ])
        #expect(r.status != 0)
        let lines = r.stderr.split(separator: "\n").filter { $0.hasPrefix("error") }
        #expect(lines.count == 1 && lines[0].contains("1 test images for 2 processes"), "\(r.output)")
    }

    /// A failure on one rank during training ends the whole job with that rank's message.
    @Test func oneRankFailingAbortsTheJob() throws {
        let data = try SyntheticCIFAR.folder(train: [("data_batch_1.bin", 64)], test: 8)
        let r = try MPI.run(
            2,
            ["--fault", "rank=1,step=3,kind=error"] + Self.tiny + [
                "--epochs", "50", "--batch-size", "8", "--bn-group", "4",
                "--data-dir", data, "--outdir", try temporaryDirectory(),
            ],
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
        #expect(
            lines == [
                "error: \(bad)/data_batch_1.bin: 3 bytes is not a whole number of 3073-byte CIFAR-10 records (expected a multiple of 3073, 30730000 for a full batch file); the file is truncated or not CIFAR-10 binary"
            ], "\(r.output)")
    }

    /// Replicas that drift apart are caught by the checksum comparison, naming ranks and step.
    @Test func replicaMismatchIsDetected() throws {
        let data = try SyntheticCIFAR.folder(train: [("data_batch_1.bin", 64)], test: 8)
        let r = try MPI.run(
            2,
            ["--fault", "rank=1,step=2,kind=diverge"] + Self.tiny + [
                "--epochs", "2", "--batch-size", "8", "--bn-group", "4",
                "--check-every", "1", "--data-dir", data,
                "--outdir", try temporaryDirectory(),
            ],
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
        #expect(
            try Data(contentsOf: URL(fileURLWithPath: a + "/model.safetensors")) == Data(contentsOf: URL(fileURLWithPath: b + "/model.safetensors")))
    }

    /// Gradients reduced in many small buckets during the backward pass give the same model as
    /// one allreduce after it: bit for bit with 2 processes (a sum of two is exact in any order),
    /// to 1e-6 with 3 (Open MPI may pick another algorithm per message size).
    @Test func bucketedAllreduceEqualsOneAllreduce() throws {
        let data = try SyntheticCIFAR.folder(train: [("data_batch_1.bin", 48)], test: 12)
        for p in [2, 3] {
            let args =
                ["train"] + Self.tiny + [
                    "--epochs", "1", "--batch-size", "\(p * 8)", "--bn-group", "4", "--max-steps", "3",
                    "--data-dir", data, "--seed", "4",
                ]
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

    /// The communicator's nonblocking sums under real mpirun, float32 and bfloat16 (the C shim's
    /// MPI_Op), on Open MPI's ring (the shim's choice for in-place sums): with 2 ranks exactly
    /// the sum rounded once; with 3 and 4 within (P - 1) roundings of the exact sum; the same bits
    /// on every rank; small and large buffers (`resnext-ddp-collectives`).
    @Test func sumsAreExactForTwoRanksAndBoundedForMore() throws {
        for p in [2, 3, 4] {
            let r = try MPI.run(p, [], program: CLI.built("resnext-ddp-collectives"))
            #expect(r.status == 0, "P=\(p): \(r.output)")
            #expect(r.stdout.components(separatedBy: ", ok").count - 1 == 10, "P=\(p): \(r.stdout)")
        }
    }

    /// `--grad-dtype bf16` trains: after one step with 2 processes the parameters and momentum are
    /// within bfloat16's rounding of the float32 run's but not equal to them, and config.json
    /// records it. Without weight decay the momentum is the reduced gradient: each rank's gradient
    /// rounded, then their sum, each rounding at most 2^-8 of its value, so relative L2 about 2^-7
    /// at most (where the ranks' gradients cancel an element can move further, but the large ones
    /// dominate the norm; measured 3.6e-3 on the Zen 4).
    @Test func bfloat16GradientsStayWithinTheirRoundingOfFloat32() throws {
        let data = try SyntheticCIFAR.folder(train: [("data_batch_1.bin", 32)], test: 8)
        let args =
            ["train"] + Self.tiny + [
                "--epochs", "1", "--batch-size", "16", "--bn-group", "4", "--max-steps", "1", "--weight-decay", "0", "--data-dir", data,
            ]
        var models: [String] = []
        for dtype in ["fp32", "bf16"] {
            let out = try temporaryDirectory()
            let r = try MPI.run(2, args + ["--outdir", out, "--grad-dtype", dtype])
            #expect(r.status == 0, "--grad-dtype \(dtype): \(r.output)")
            let config = try String(contentsOfFile: out + "/config.json", encoding: .utf8)
            #expect(config.contains("\"grad_dtype\" : \"\(dtype)\""), "\(config)")
            models.append(out + "/checkpoint.safetensors")
        }
        let (worst, name) = try worstDifference(models[1], models[0])
        #expect(worst > 0 && worst < 0x1p-7, "bf16 against fp32 after one step: \(name) differs by \(worst)")
        let bad = try CLI.run(["train", "--grad-dtype", "fp16", "--data-dir", data])
        #expect(bad.status != 0 && bad.stderr.contains("--grad-dtype"), "\(bad.output)")
    }
}
