import Foundation
import ResNeXt
import ResNeXtTrain
import Testing

/// Never losing more than minutes of training: periodic checkpoints kept in rotation, each
/// verified on resume with a fallback to the previous one, a write that fails leaving the last
/// one intact, and a signal to one rank of a real `mpirun` job ending in a checkpoint from which
/// the run continues bit for bit.
@Suite(.serialized) struct CheckpointTests {
    static let tiny = MPITests.tiny

    static func bytes(_ path: String) throws -> Data { try Data(contentsOf: URL(fileURLWithPath: path)) }

    static func epochs(_ dir: String) throws -> [EpochMetrics] {
        try String(contentsOfFile: dir + "/metrics.jsonl", encoding: .utf8).split(separator: "\n")
            .map { try JSONDecoder().decode(EpochMetrics.self, from: Data($0.utf8)) }
    }

    /// The metrics of two runs agree but for the time columns.
    static func sameMetrics(_ a: [EpochMetrics], _ b: [EpochMetrics]) -> Bool {
        a.count == b.count
            && zip(a, b).allSatisfy {
                $0.epoch == $1.epoch && $0.step == $1.step && $0.lr == $1.lr && $0.trainLoss == $1.trainLoss
                    && $0.trainAccuracy == $1.trainAccuracy && $0.testLoss == $1.testLoss && $0.testAccuracy == $1.testAccuracy
            }
    }

    /// `--checkpoint-steps 3 --keep-checkpoints 2`: the last two numbered checkpoints, and
    /// checkpoint.safetensors a second name of the newest; a run stopped mid-epoch (step 10 of
    /// 12, epoch 3) and resumed ends with the same model, and the same metrics rows (the epoch's
    /// running sums travel in the checkpoint), as one that never stopped.
    @Test func periodicCheckpointsRotateAndResumeMidEpochExactly() throws {
        let data = try SyntheticCIFAR.folder(train: [("data_batch_1.bin", 32)], test: 8)
        let straight = try temporaryDirectory(), split = try temporaryDirectory()
        let common =
            ["train"] + Self.tiny + ["--epochs", "3", "--batch-size", "8", "--bn-group", "4", "--data-dir", data, "--checkpoint-steps", "3"]
        #expect(try CLI.run(common + ["--outdir", straight]).status == 0)
        let first = try CLI.run(common + ["--outdir", split, "--max-steps", "10"])
        #expect(first.status == 0, "\(first.output)")
        let names = try FileManager.default.contentsOfDirectory(atPath: split).filter { $0.hasPrefix("checkpoint") }.sorted()
        // steps 3, 6, 8 (epoch 2's end), 9, 10 (the end): the last two kept
        #expect(names == [Checkpoint.name(step: 9), Checkpoint.name(step: 10), Checkpoint.fileName], "\(names)")
        var newest = stat(), latest = stat()
        stat(split + "/" + Checkpoint.name(step: 10), &newest)
        stat(split + "/" + Checkpoint.fileName, &latest)
        #expect(newest.st_ino == latest.st_ino, "checkpoint.safetensors is the newest")
        let second = try CLI.run(common + ["--outdir", split, "--resume", split])
        #expect(second.status == 0, "\(second.output)")
        #expect(second.stdout.contains("resuming from \(split)/\(Checkpoint.name(step: 10)) at step 10"), "\(second.stdout)")
        #expect(try Self.bytes(straight + "/model.safetensors") == Self.bytes(split + "/model.safetensors"))
        let (a, b) = (try Self.epochs(straight), try Self.epochs(split))
        #expect(b.map(\.epoch) == [1, 2, 3] && Self.sameMetrics(a, b), "\(a)\n\(b)")
    }

    /// A damaged newest checkpoint (one byte flipped, or cut short) is refused naming the file
    /// and the tensor or bytes; `--resume FOLDER` warns and takes the previous one, and the run
    /// still ends where an uninterrupted one does.
    @Test(arguments: ["flip", "truncate"]) func damagedNewestCheckpointFallsBack(damage: String) throws {
        let data = try SyntheticCIFAR.folder(train: [("data_batch_1.bin", 32)], test: 8)
        let straight = try temporaryDirectory(), split = try temporaryDirectory()
        let common = ["train"] + Self.tiny + ["--epochs", "2", "--batch-size", "8", "--bn-group", "4", "--data-dir", data]
        #expect(try CLI.run(common + ["--outdir", straight]).status == 0)
        #expect(try CLI.run(common + ["--outdir", split, "--max-steps", "6", "--checkpoint-steps", "3"]).status == 0)
        let newest = split + "/" + Checkpoint.name(step: 6)
        var bytes = try Self.bytes(newest)
        if damage == "flip" {
            bytes[bytes.count - 100] ^= 0x40  // inside the last tensor's data
        } else {
            bytes = bytes.prefix(bytes.count - 1000)
        }
        try bytes.write(to: URL(fileURLWithPath: newest))
        // the file alone is refused in one line
        let alone = try CLI.run(common + ["--outdir", try temporaryDirectory(), "--resume", newest])
        let errors = alone.stderr.split(separator: "\n").filter { $0.hasPrefix("error") }
        #expect(alone.status != 0 && errors.count == 1, "\(alone.output)")
        let expected = damage == "flip" ? "does not match its checksum: the file is damaged" : "the file is truncated"
        #expect(errors.first.map { $0.contains(newest) && $0.contains(expected) } == true, "\(alone.output)")
        if damage == "flip" { #expect(errors.first?.contains("(bytes ") == true, "names the bytes: \(alone.output)") }
        // the folder falls back to the previous one: step 4, epoch 1's end (step 3's was rotated out)
        let resumed = try CLI.run(common + ["--outdir", split, "--resume", split])
        #expect(resumed.status == 0, "\(resumed.output)")
        #expect(resumed.stdout.contains("warning: --resume \(newest)"), "\(resumed.stdout)")
        #expect(resumed.stdout.contains("resuming from \(split)/\(Checkpoint.name(step: 4)) at step 4"), "\(resumed.stdout)")
        #expect(try Self.bytes(straight + "/model.safetensors") == Self.bytes(split + "/model.safetensors"))
        #expect(try Self.epochs(split).map(\.epoch) == [1, 2])
    }

    /// A checkpoint that cannot be written (a file-size limit, as a full disk) stops the run with
    /// an error naming the file; the previous checkpoint is intact and resumes.
    @Test func failedWriteKeepsThePreviousCheckpoint() throws {
        let data = try SyntheticCIFAR.folder(train: [("data_batch_1.bin", 32)], test: 8)
        let out = try temporaryDirectory()
        let common = ["train"] + Self.tiny + ["--epochs", "3", "--batch-size", "8", "--bn-group", "4", "--data-dir", data, "--outdir", out]
        #expect(try CLI.run(common + ["--max-steps", "4"]).status == 0)
        let before = try Self.bytes(out + "/" + Checkpoint.name(step: 4))
        // 16 KiB: config.json and the metrics fit, a checkpoint (about 40 KB) does not
        let limited = try CLI.run(
            ["-c", "ulimit -f 32; exec \"$0\" \"$@\"", CLI.executable] + common + ["--resume", out], executable: "/bin/bash")
        #expect(limited.status != 0, "\(limited.output)")
        let errors = limited.stderr.split(separator: "\n").filter { $0.hasPrefix("error") }
        #expect(
            errors.count == 1 && errors[0].contains(out + "/" + Checkpoint.name(step: 8)) && errors[0].contains("File too large"), "\(limited.output)"
        )
        #expect(try Self.bytes(out + "/" + Checkpoint.name(step: 4)) == before, "the previous checkpoint is untouched")
        #expect(try CLI.run(common + ["--resume", out]).status == 0)
    }

    /// SIGTERM to one rank of `mpirun -np 2`: every rank finishes its step, rank 0 writes a
    /// checkpoint, the job exits with 75; resumed, the run ends with the same model as one that
    /// never stopped, and the metrics hold every epoch once.
    @Test func signalToOneRankCheckpointsAndResumesExactly() throws {
        let data = try SyntheticCIFAR.folder(train: [("data_batch_1.bin", 64)], test: 8)
        let straight = try temporaryDirectory(), split = try temporaryDirectory()
        let common = ["train"] + Self.tiny + ["--epochs", "150", "--batch-size", "8", "--bn-group", "4", "--data-dir", data]
        #expect(try MPI.run(2, common + ["--outdir", straight]).status == 0)
        // the same run in the background; once two epochs are logged, SIGTERM to rank 1
        let log = split + "/stdout.txt"
        let process = try Self.background(
            "/usr/bin/env", ["timeout", "180", "mpirun", "-np", "2", "--oversubscribe", CLI.executable] + common + ["--outdir", split], log: log)
        var signalled = false
        if Self.waitForEpochs(2, in: split) {
            for rank in Self.ranks(of: CLI.executable, writing: split) where rank.rank == 1 {
                signalled = kill(rank.pid, SIGTERM) == 0
            }
        }
        process.waitUntilExit()
        let output = try String(contentsOfFile: log, encoding: .utf8)
        #expect(signalled && process.terminationStatus == StopSignal.exitStatus, "exit \(process.terminationStatus): \(output)")
        let line = output.split(separator: "\n").first { $0.hasPrefix("stopped at step ") }
        #expect(line?.contains("on a signal to another rank: checkpoint written to \(split)/checkpoint-") == true, "\(output)")
        let resumed = try MPI.run(2, common + ["--outdir", split, "--resume", split])
        #expect(resumed.status == 0, "\(resumed.output)")
        #expect(try Self.bytes(straight + "/model.safetensors") == Self.bytes(split + "/model.safetensors"))
        #expect(try Self.epochs(split).map(\.epoch) == Array(1...150))
    }

    /// Ctrl-C or `kill` of the launch script (launch/local.sh) ends in a checkpoint too: it hands
    /// mpirun SIGUSR1, which reaches every rank at once (mpirun's own SIGTERM handling would kill
    /// a rank whose step takes more than a second), and exits with 75.
    @Test func launchScriptTurnsSIGTERMIntoACheckpoint() throws {
        let data = try SyntheticCIFAR.folder(train: [("data_batch_1.bin", 64)], test: 8)
        let out = try temporaryDirectory()
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let script = root.appendingPathComponent("launch/local.sh").path
        let args = ["-np", "2"] + Self.tiny + ["--epochs", "3000", "--batch-size", "8", "--bn-group", "4", "--data-dir", data, "--outdir", out]
        let process = try Self.background(
            script, args, log: out + "/stdout.txt", environment: ["RESNEXT_DDP": CLI.executable, "MPIRUN_ARGS": "--oversubscribe"])
        if Self.waitForEpochs(2, in: out) { process.terminate() }  // SIGTERM to the script
        process.waitUntilExit()
        let output = try String(contentsOfFile: out + "/stdout.txt", encoding: .utf8)
        #expect(process.terminationStatus == StopSignal.exitStatus, "exit \(process.terminationStatus): \(output)")
        #expect(output.contains("on SIGUSR1: checkpoint written to \(out)/checkpoint-"), "\(output)")
        let step = Int(try SafeTensorsFile(path: out + "/" + Checkpoint.fileName).metadata["step"] ?? "") ?? 0
        #expect(step > 0 && step < 24000, "a mid-run checkpoint: step \(step)")
    }

    /// Starts `executable` with stdout to `log` (stderr to `errors`, or discarded), as root may run mpirun.
    static func background(
        _ executable: String, _ arguments: [String], log: String, errors: String? = nil, environment: [String: String] = [:]
    ) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = CLI.environment(adding: MPI.asRoot.merging(environment) { _, given in given })
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        process.standardOutput = FileHandle(forWritingAtPath: log)
        if let errors {
            _ = FileManager.default.createFile(atPath: errors, contents: nil)
            process.standardError = FileHandle(forWritingAtPath: errors)
        } else {
            process.standardError = FileHandle.nullDevice
        }
        // the child inherits this thread's signal mask, and the test runner's threads block
        // signals: unblocked, the script's traps can see SIGTERM
        var none = sigset_t(), old = sigset_t()
        sigemptyset(&none)
        pthread_sigmask(SIG_SETMASK, &none, &old)
        defer { pthread_sigmask(SIG_SETMASK, &old, nil) }
        try process.run()
        return process
    }

    /// Waits (up to 30 s) until the run in `dir` has logged `count` epochs.
    static func waitForEpochs(_ count: Int, in dir: String) -> Bool {
        for _ in 0..<600 {
            if ((try? epochs(dir))?.count ?? 0) >= count { return true }
            usleep(50_000)
        }
        return false
    }

    /// The processes running `executable` under mpirun with `outdir` on their command line (other
    /// tests run the same binary meanwhile), with their rank (from their environment).
    static func ranks(of executable: String, writing outdir: String) -> [(pid: Int32, rank: Int)] {
        let pids = (try? FileManager.default.contentsOfDirectory(atPath: "/proc"))?.compactMap { Int32($0) } ?? []
        return pids.compactMap { pid in
            guard let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/exe"),
                URL(fileURLWithPath: exe).resolvingSymlinksInPath().path == URL(fileURLWithPath: executable).resolvingSymlinksInPath().path,
                let environ = FileManager.default.contents(atPath: "/proc/\(pid)/environ"),
                let commandLine = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline"),
                commandLine.split(separator: 0).contains(where: { String(decoding: $0, as: UTF8.self) == outdir })
            else { return nil }
            let variables = environ.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            guard let rank = variables.first(where: { $0.hasPrefix("OMPI_COMM_WORLD_RANK=") }).flatMap({ Int($0.dropFirst(21)) }) else { return nil }
            return (pid, rank)
        }
    }

    /// scripts/fault-injection.sh: three SIGKILLs to a random rank at random moments, each
    /// segment resumed from what the last one left. The final model equals, byte for byte, the
    /// uninterrupted run's (2 processes throughout; a tiny model, 1200 steps), or with 1, 2 and 4
    /// processes in turn (a wider model, 48 steps, slow enough to be killed mid-run) that of a run
    /// without kills stopped and resumed at the same steps with the same counts. Every epoch is
    /// logged once, and no temporary file is left.
    @Test(arguments: [
        ("2", ["--base-channels", "2", "--epochs", "300", "--checkpoint-steps", "2"]),
        ("1 2 4", ["--cardinality", "4", "--base-channels", "16", "--epochs", "12", "--checkpoint-steps", "1"]),
    ])
    func faultInjectionScript(procs: String, model: [String]) throws {
        let data = try SyntheticCIFAR.folder(train: [("data_batch_1.bin", 64)], test: 16)
        let out = try temporaryDirectory()
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let r = try CLI.run(
            ["--kills", "3", "--procs", procs, "--outdir", out, "--", "--depth", "11", "--cardinality", "2"] + model + [
                "--batch-size", "16", "--bn-group", "4", "--lr", "0.001", "--data-dir", data, "--progress-seconds", "100",
            ],
            executable: root.appendingPathComponent("scripts/fault-injection.sh").path, environment: ["RESNEXT_DDP": CLI.executable])
        #expect(r.status == 0, "\(r.output)")
        let kills = r.stdout.split(separator: "\n").filter { $0.contains(", SIGKILL to pid ") }
        #expect(kills.count == 3, "\(r.stdout)")
        let equal = procs == "2" ? "equals the uninterrupted run's, byte for byte" : "equals a run without kills that stops and resumes"
        #expect(r.stdout.contains(equal), "\(r.stdout)")
        let left = try FileManager.default.contentsOfDirectory(atPath: out + "/run").filter { $0.contains(".tmp-") }
        #expect(left.isEmpty, "\(left)")
    }
}
