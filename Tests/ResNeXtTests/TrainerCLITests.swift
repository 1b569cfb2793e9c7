import Foundation
import ResNeXt
import ResNeXtTrain
import Testing

/// The train, eval and download commands, run as a user runs them, on small generated data.
@Suite(.serialized) struct TrainerCLITests {
    static let tiny = ["--depth", "11", "--cardinality", "2", "--base-channels", "2"]

    @Test func executableIsFound() throws {
        let r = try CLI.run(["--version"])
        #expect(r.status == 0, "\(CLI.executable): \(r.output)")
        #expect(r.stdout.contains(resnextDDPVersion))
    }

    /// A short run writes every output, readable by the tools users have.
    @Test func trainWritesEveryOutput() throws {
        let data = try SyntheticCIFAR.folder(train: [("data_batch_1.bin", 48), ("data_batch_2.bin", 16)], test: 20)
        let out = try temporaryDirectory()
        let r = try CLI.run(
            ["train"] + Self.tiny + [
                "--epochs", "2", "--batch-size", "16", "--bn-group", "8",
                "--data-dir", data, "--outdir", out, "--tensorboard", "--progress-seconds", "0",
            ])
        #expect(r.status == 0, "\(r.output)")
        #expect(r.stdout.contains("64 train and 20 test images"), "\(r.stdout)")
        #expect(r.stdout.contains("epoch 1/2 step 1/8 loss"), "progress line: \(r.stdout)")
        #expect(r.stdout.contains("ETA"))
        // config.json: every setting, the effective learning rate, the process count, the version
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/config.json"))) as! [String: Any]
        #expect(config["effective_lr"] as? Double == 0.0125, "0.1 x 16 / 128")
        #expect(config["processes"] as? Int == 1)
        #expect(config["version"] as? String == resnextDDPVersion)
        #expect(config["bn_groups_per_process"] as? Int == 2)
        let settings = config["settings"] as! [String: Any]
        #expect(settings["batch_size"] as? Int == 16)
        #expect(settings["base_lr"] as? Double == 0.1)
        #expect(settings["milestones"] as? [Int] == [150, 225])
        // metrics: one row per epoch, in both formats
        let jsonl = try String(contentsOfFile: out + "/metrics.jsonl", encoding: .utf8).split(separator: "\n")
        #expect(jsonl.count == 2)
        let row = try JSONDecoder().decode(EpochMetrics.self, from: Data(jsonl[1].utf8))
        #expect(row.epoch == 2 && row.step == 8)
        #expect(row.testAccuracy >= 0 && row.testAccuracy <= 1 && row.trainLoss.isFinite && row.imagesPerSecond > 0)
        let csv = try String(contentsOfFile: out + "/metrics.csv", encoding: .utf8).split(separator: "\n")
        #expect(csv.first.map(String.init) == EpochMetrics.csvHeader)
        #expect(csv.count == 3)
        // the final model loads strictly and evaluates; eval reads the model shape from the file
        let net = try ResNeXt<Float>(ResNeXtConfig(depth: 11, cardinality: 2, baseChannels: 2), maxBatch: 1)
        try net.loadStateDict(SafeTensorsFile(path: out + "/model.safetensors"))
        let e = try CLI.run(["eval", "--weights", out + "/model.safetensors", "--data-dir", data, "--json"])
        #expect(e.status == 0, "\(e.output)")
        let result = try JSONSerialization.jsonObject(with: Data(e.stdout.utf8)) as! [String: Any]
        #expect(result["images"] as? Int == 20)
        #expect(abs((result["accuracy"] as! Double) - row.testAccuracy) < 1e-9, "eval agrees with the last epoch's test accuracy")
        #expect(abs((result["loss"] as! Double) - row.testLoss) < 1e-6)
        let onTrain = try CLI.run(["eval", "--weights", out + "/checkpoint.safetensors", "--data-dir", data, "--split", "train", "--json"])
        #expect(onTrain.status == 0 && onTrain.stdout.contains("\"images\": 64"), "\(onTrain.output)")
        // TensorBoard: framed records with valid CRCs, the expected tags, one event per epoch
        let tb = try FileManager.default.contentsOfDirectory(atPath: out + "/tb")
        #expect(tb.count == 1 && tb[0].hasPrefix("events.out.tfevents."))
        let records = try TFRecords.read(out + "/tb/" + tb[0])
        #expect(records.count == 3, "file_version + 2 epochs")
        let text = String(decoding: records[1], as: UTF8.self)
        for tag in ["Train/Loss", "Train/Accuracy", "Test/Loss", "Test/Accuracy", "LR", "images/s"] {
            #expect(text.contains(tag), "\(tag)")
        }
    }

    /// Stopping after an epoch (or in the middle of one) and resuming gives the same weights, bit
    /// for bit, as one uninterrupted run.
    @Test(arguments: [4, 6]) func resumeIsExact(stopAfter: Int) throws {
        let data = try SyntheticCIFAR.folder(train: [("data_batch_1.bin", 32)], test: 8)
        let straight = try temporaryDirectory(), split = try temporaryDirectory()
        let common =
            ["train"] + Self.tiny + [
                "--epochs", "3", "--batch-size", "8", "--bn-group", "4", "--data-dir", data,
                "--tensorboard",
            ]
        let a = try CLI.run(common + ["--outdir", straight])
        #expect(a.status == 0, "\(a.output)")
        let b1 = try CLI.run(common + ["--outdir", split, "--max-steps", "\(stopAfter)"])
        #expect(b1.status == 0, "\(b1.output)")
        let b2 = try CLI.run(common + ["--outdir", split, "--resume", split])
        #expect(b2.status == 0, "\(b2.output)")
        #expect(b2.stdout.contains("resuming from \(split)/\(Checkpoint.name(step: stopAfter)) at step \(stopAfter)"), "\(b2.stdout)")
        let x = try Data(contentsOf: URL(fileURLWithPath: straight + "/model.safetensors"))
        let y = try Data(contentsOf: URL(fileURLWithPath: split + "/model.safetensors"))
        #expect(x == y, "resumed run differs from the uninterrupted one")
        let cx = try SafeTensorsFile(path: straight + "/checkpoint.safetensors"), cy = try SafeTensorsFile(path: split + "/checkpoint.safetensors")
        for name in cx.names where name.hasPrefix(Checkpoint.momentumPrefix) {
            #expect(try cx.bytes(name) == cy.bytes(name), "\(name)")
        }
        // the metrics hold each epoch once
        let rows = try String(contentsOfFile: split + "/metrics.jsonl", encoding: .utf8).split(separator: "\n")
            .map { try JSONDecoder().decode(EpochMetrics.self, from: Data($0.utf8)) }
        #expect(rows.map(\.epoch) == [1, 2, 3], "\(rows.map(\.epoch))")
    }

    /// `train --tune-convolutions` prints the paths kept and records them in config.json and the
    /// checkpoint; a resumed run takes them from the checkpoint instead of timing again.
    @Test func tunedPathsAreKeptOnResume() throws {
        let data = try SyntheticCIFAR.folder(train: [("data_batch_1.bin", 16)], test: 4)
        let out = try temporaryDirectory()
        let common = ["train"] + Self.tiny + ["--epochs", "2", "--batch-size", "8", "--bn-group", "8", "--data-dir", data, "--outdir", out]
        let first = try CLI.run(common + ["--tune-convolutions", "--max-steps", "2"])
        #expect(first.status == 0, "\(first.output)")
        #expect(first.stdout.contains("--tune-convolutions: ") && first.stdout.contains("| kept |"), "\(first.stdout)")
        let recorded = try SafeTensorsFile(path: out + "/checkpoint.safetensors").metadata[Checkpoint.pathsKey]
        #expect(recorded != nil, "the checkpoint records the paths")
        let config = try String(contentsOfFile: out + "/config.json", encoding: .utf8)
        #expect(config.contains("\"convolution_paths\""), "\(config)")
        let second = try CLI.run(common + ["--resume", out])
        #expect(second.status == 0, "\(second.output)")
        let expected = (recorded ?? "").isEmpty ? "the defaults" : recorded!
        #expect(second.stdout.contains("convolution paths from the checkpoint: \(expected)"), "\(second.stdout)")
        #expect(!second.stdout.contains("--tune-convolutions: "), "no second timing")
        #expect(try SafeTensorsFile(path: out + "/checkpoint.safetensors").metadata[Checkpoint.pathsKey] == recorded)
        // a run that did not tune records nothing
        let plain = try temporaryDirectory()
        let third = try CLI.run(
            ["train"] + Self.tiny + ["--epochs", "1", "--batch-size", "8", "--bn-group", "8", "--data-dir", data, "--outdir", plain])
        #expect(third.status == 0, "\(third.output)")
        #expect(try SafeTensorsFile(path: plain + "/checkpoint.safetensors").metadata[Checkpoint.pathsKey] == nil)
    }

    @Test func resumeWithAnotherShapeIsRefused() throws {
        let data = try SyntheticCIFAR.folder(train: [("data_batch_1.bin", 16)], test: 4)
        let out = try temporaryDirectory()
        let first = try CLI.run(
            ["train"] + Self.tiny + ["--epochs", "1", "--batch-size", "8", "--bn-group", "8", "--data-dir", data, "--outdir", out])
        #expect(first.status == 0, "\(first.output)")
        let r = try CLI.run([
            "train", "--depth", "11", "--cardinality", "2", "--base-channels", "4", "--epochs", "2",
            "--batch-size", "8", "--bn-group", "8", "--data-dir", data, "--outdir", out, "--resume", out,
        ])
        #expect(r.status != 0)
        #expect(
            r.stderr.contains(
                "the checkpoint is ResNeXt-11 2x2d, but this run builds ResNeXt-11 2x4d; resume with --depth 11 --cardinality 2 --base-channels 2"),
            "\(r.output)")
        #expect(r.stderr.split(separator: "\n").count == 1, "one line: \(r.stderr)")
        // nothing lost: the checkpoint is untouched
        let net = try ResNeXt<Float>(ResNeXtConfig(depth: 11, cardinality: 2, baseChannels: 2), maxBatch: 1)
        #expect(try Checkpoint.load(out + "/checkpoint.safetensors", into: net).step == 2)
    }

    @Test(arguments: [
        (["--batch-size", "20", "--bn-group", "8"], "--batch-size 20 is not divisible by --bn-group 8"),
        (["--depth", "12"], "--depth 12 is not 9n+2"),
        (["--max-steps", "0"], "--max-steps must be at least 1"),
        (["--bucket-mb=-1"], "--bucket-mb must be 0 (no buckets) or a positive size in MiB"),
        (["--batch-size", "128"], "64 training images is fewer than --batch-size 128"),
        (["--init", "/nonexistent/model.safetensors"], "/nonexistent/model.safetensors: cannot read the file"),
    ]) func badOptions(extra: [String], message: String) throws {
        let data = try SyntheticCIFAR.folder(train: [("data_batch_1.bin", 64)], test: 4)
        let out = try temporaryDirectory()
        var args = ["train"] + Self.tiny + ["--epochs", "1", "--batch-size", "8", "--bn-group", "4", "--data-dir", data, "--outdir", out]
        args += extra
        let r = try CLI.run(args)
        #expect(r.status != 0)
        #expect(r.stderr.contains(message), "\(r.output)")
        #expect(r.stderr.split(separator: "\n").count == 1, "one line: \(r.stderr)")
    }

    @Test func badDataFiles() throws {
        let data = try SyntheticCIFAR.folder(train: [("data_batch_1.bin", 8)], test: 4)
        let out = try temporaryDirectory()
        let args = ["train"] + Self.tiny + ["--epochs", "1", "--batch-size", "8", "--bn-group", "4", "--data-dir", data, "--outdir", out]
        // a truncated file: named, with its size and what was expected
        try Data(SyntheticCIFAR.records(3, seed: 5).dropLast(100)).write(to: URL(fileURLWithPath: data + "/data_batch_2.bin"))
        var r = try CLI.run(args)
        #expect(r.status != 0)
        #expect(r.stderr.contains("\(data)/data_batch_2.bin: 9119 bytes is not a whole number of 3073-byte CIFAR-10 records"), "\(r.output)")
        // a label outside 0-9
        var bad = SyntheticCIFAR.records(2, seed: 6)
        bad[3073] = 12
        try Data(bad).write(to: URL(fileURLWithPath: data + "/data_batch_2.bin"))
        r = try CLI.run(args)
        #expect(r.stderr.contains("\(data)/data_batch_2.bin: record 1 (byte 3073) has label 12; labels must be 0-9"), "\(r.output)")
        try FileManager.default.removeItem(atPath: data + "/data_batch_2.bin")
        // no test file
        try FileManager.default.removeItem(atPath: data + "/test_batch.bin")
        r = try CLI.run(args)
        #expect(r.stderr.contains("test_batch.bin is missing"), "\(r.output)")
        // no folder
        r = try CLI.run(args.map { $0 == data ? data + "/nowhere" : $0 })
        #expect(r.status != 0 && r.stderr.contains("nowhere: no such folder"), "\(r.output)")
        #expect(!FileManager.default.fileExists(atPath: out + "/checkpoint.safetensors"))
    }

    /// The exact-semantics check: from a fixture's init, on its raw records, without augmentation or
    /// shuffling, the trainer's model.safetensors equals the fixture's last state (README tolerance).
    @Test func fixtureExactRuns() throws {
        for name in try Fixtures.modelFiles() {
            try Self.checkFixtureRun(try ModelCase(name), name: name) { try CLI.run($0) }
        }
    }

    /// Trains a fixture's case through the command line (`launch` runs the arguments, directly or
    /// under mpirun) and compares model.safetensors with the fixture's last state.
    /// A data folder holding the fixture's raw records (as training and test file) and its
    /// `init.*` state, and the train command line that replays the fixture into `out`.
    static func fixtureRun(_ c: ModelCase, out: String) throws -> [String] {
        let data = try temporaryDirectory()
        let raw = try c.file.bytes("raw")
        try Data(raw).write(to: URL(fileURLWithPath: data + "/data_batch_1.bin"))
        try Data(raw).write(to: URL(fileURLWithPath: data + "/test_batch.bin"))
        let initial = try ResNeXt<Float>(c.config, maxBatch: 1)
        try initial.loadStateDict(c.file, prefix: "init.")
        try initial.saveStateDict(to: data + "/init.safetensors")
        return [
            "train", "--depth", "\(c.config.depth)", "--cardinality", "\(c.config.cardinality)",
            "--base-channels", "\(c.config.baseChannels)", "--init", data + "/init.safetensors",
            "--no-augment", "--no-shuffle", "--lr", "\(c.optimizer.learningRate)",
            "--momentum", "\(c.optimizer.momentum)", "--weight-decay", "\(c.optimizer.weightDecay)",
            "--nesterov", "\(c.optimizer.nesterov)", "--batch-size", "\(c.batch)", "--bn-group", "\(c.bnGroup)",
            "--max-steps", "\(c.steps)", "--data-dir", data, "--outdir", out,
        ]
    }

    static func checkFixtureRun(_ c: ModelCase, name: String, launch: ([String]) throws -> CLI.Result) throws {
        let out = try temporaryDirectory()
        let r = try launch(try fixtureRun(c, out: out))
        #expect(r.status == 0, "\(r.output)")
        let model = try SafeTensorsFile(path: out + "/model.safetensors")
        var misses: [String] = []
        for tensor in model.names {
            let ref = "step\(c.steps).\(tensor)"
            if tensor.hasSuffix("num_batches_tracked") {
                #expect(try model.int64s(tensor) == c.file.int64s(ref), "\(name) \(tensor)")
            } else {
                let err = relativeError(try model.floats(tensor), try c.file.doubles(ref))
                if !(err < ModelFixtureTests.stateTolerance) { misses.append("\(tensor) \(String(format: "%.3g", err))") }
            }
        }
        if misses.isEmpty { return }
        // A miss is excused only where float32 rounding alone puts the tolerance out of reach
        // (measured; see ModelFixtureTests.report and float32Spread).
        let (spread, noise) = try ModelFixtureTests.float32Spread(c)
        let summary = "\(name): final state misses \(ModelFixtureTests.stateTolerance): \(misses.joined(separator: ", "))"
        if 2 * spread > ModelFixtureTests.stateTolerance {
            withKnownIssue(
                "float32 gradient noise of \(String(format: "%.2g", noise)) (one rounding of the start, in float64) moves this trajectory's final state by \(String(format: "%.3g", spread))",
                isIntermittent: true
            ) {
                Issue.record(Comment(rawValue: summary))
            }
        } else {
            Issue.record(Comment(rawValue: summary + " (float32 spread only \(String(format: "%.3g", spread)))"))
        }
    }

    /// The trainer computes exactly what the engine computes, bit for bit (same thread count).
    @Test func trainerEqualsEngine() throws {
        for name in try Fixtures.modelFiles() {
            let c = try ModelCase(name)
            let out = try temporaryDirectory()
            let r = try CLI.run(try Self.fixtureRun(c, out: out))
            #expect(r.status == 0, "\(r.output)")
            let model = try SafeTensorsFile(path: out + "/model.safetensors")
            let engine = try ModelFixtureTests.finalState(c)
            for tensor in model.names where !tensor.hasSuffix("num_batches_tracked") {
                #expect(try model.floats(tensor).map(Double.init) == engine[tensor]!, "\(name) \(tensor): trainer and engine differ")
            }
        }
    }

    @Test func downloadChecksAndUnpacksOnlyTheDataFiles() throws {
        let work = try temporaryDirectory()
        let tree = work + "/src/cifar-10-batches-bin"
        try FileManager.default.createDirectory(atPath: tree, withIntermediateDirectories: true)
        for name in CIFAR10.trainFiles { try Data(SyntheticCIFAR.records(2, seed: 7)).write(to: URL(fileURLWithPath: tree + "/" + name)) }
        try Data(SyntheticCIFAR.records(3, seed: 8)).write(to: URL(fileURLWithPath: tree + "/test_batch.bin"))
        try Data("airplane\n".utf8).write(to: URL(fileURLWithPath: tree + "/batches.meta.txt"))
        try Data("not expected".utf8).write(to: URL(fileURLWithPath: tree + "/readme.html"))
        let tar = Process()
        tar.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        tar.arguments = ["tar", "-czf", work + "/cifar.tar.gz", "-C", work + "/src", "cifar-10-batches-bin"]
        try tar.run(); tar.waitUntilExit()
        let archive = try Data(contentsOf: URL(fileURLWithPath: work + "/cifar.tar.gz"))
        // the official digest does not match this archive: refused, nothing unpacked
        var r = try CLI.run(["download", "--url", "file://\(work)/cifar.tar.gz", "--dest", work + "/data"])
        #expect(r.status != 0)
        #expect(r.stderr.contains("expected c32a1d4ab5d03f1284b67883e8d87530"), "\(r.output)")
        #expect(!FileManager.default.fileExists(atPath: work + "/data/cifar-10-batches-bin"))
        r = try CLI.run(["download", "--url", "file://\(work)/cifar.tar.gz", "--md5", md5Hex([UInt8](archive)), "--dest", work + "/data"])
        #expect(r.status == 0, "\(r.output)")
        #expect(r.stdout.contains("10 train and 3 test images"), "\(r.stdout)")
        let files = try FileManager.default.contentsOfDirectory(atPath: work + "/data/cifar-10-batches-bin").sorted()
        #expect(files == (CIFAR10.trainFiles + ["batches.meta.txt", "test_batch.bin"]).sorted(), "\(files)")
    }
}

/// Reads TFRecord framing and checks both CRCs of every record.
enum TFRecords {
    static func read(_ path: String) throws -> [[UInt8]] {
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        var records: [[UInt8]] = []
        var i = 0
        func u32(_ at: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(bytes[at + $1]) << (8 * UInt32($1)) } }
        while i < bytes.count {
            let lengthBytes = Array(bytes[i..<(i + 8)])
            let length = Int((0..<8).reduce(UInt64(0)) { $0 | UInt64(lengthBytes[$1]) << (8 * UInt64($1)) })
            #expect(u32(i + 8) == maskedCRC32C(lengthBytes), "length CRC at \(i)")
            let data = Array(bytes[(i + 12)..<(i + 12 + length)])
            #expect(u32(i + 12 + length) == maskedCRC32C(data), "data CRC at \(i)")
            records.append(data)
            i += 12 + length + 4
        }
        return records
    }
}
