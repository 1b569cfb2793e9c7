import Foundation
import ResNeXt
import ResNeXtTrain
import Testing

/// Runs the resnext-ddp executable built next to the test bundle.
enum CLI {
    static var executable: String { built("resnext-ddp") }

    /// An executable of this package, built next to the test bundle.
    static func built(_ name: String) -> String {
        var candidates: [URL] = []
        let arg0 = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        candidates.append(arg0.deletingLastPathComponent())
        candidates.append(URL(fileURLWithPath: Bundle.main.bundlePath).deletingLastPathComponent())
        candidates.append(URL(fileURLWithPath: Bundle.main.bundlePath))
        for dir in candidates {
            let path = dir.appendingPathComponent(name).path
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        return candidates[0].appendingPathComponent(name).path
    }

    struct Result {
        let status: Int32
        let stdout: String
        let stderr: String
        var output: String { stdout + stderr }
    }

    /// The test's environment for a child: one OpenBLAS thread, `adding` on top, `unset` removed.
    static func environment(adding: [String: String] = [:], unset: [String] = []) -> [String: String] {
        var env = ProcessInfo.processInfo.environment
        env["OPENBLAS_NUM_THREADS"] = "1"
        for (k, v) in adding { env[k] = v }
        for k in unset { env[k] = nil }
        return env
    }

    /// Runs a command line, reading both pipes to the end before waiting (a full pipe deadlocks).
    /// `environment` is added to the test's own; the variables in `unset` are removed from it.
    static func run(
        _ arguments: [String], executable: String = CLI.executable, environment: [String: String] = [:],
        unset: [String] = []
    ) throws -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = Self.environment(adding: environment, unset: unset)
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let group = DispatchGroup()
        nonisolated(unsafe) var errData = Data()
        group.enter()
        DispatchQueue.global().async {
            errData = err.fileHandleForReading.readDataToEndOfFile()
            group.leave()
        }
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        process.waitUntilExit()
        return Result(
            status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
            stderr: String(decoding: errData, as: UTF8.self))
    }
}

/// Small CIFAR-format data sets written for a test.
enum SyntheticCIFAR {
    /// `count` records with labels 0-9 and pixels that depend on the label (so a model can learn).
    static func records(_ count: Int, seed: UInt64) -> [UInt8] {
        var rng = SplitMix64(seed: seed)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(count * CIFAR10.recordSize)
        for _ in 0..<count {
            let label = UInt8(rng.nextInt(below: 10))
            bytes.append(label)
            for c in 0..<3 {
                for p in 0..<1024 {
                    let base = (Int(label) * 25 + c * 40 + (p % 32) * 2) % 256
                    bytes.append(UInt8((base + rng.nextInt(below: 40)) % 256))
                }
            }
        }
        return bytes
    }

    /// A data folder with the given training files (name -> record count) and a test file.
    static func folder(train: [(String, Int)] = [("data_batch_1.bin", 64)], test: Int = 20, seed: UInt64 = 1) throws -> String {
        let dir = try temporaryDirectory()
        for (i, (name, count)) in train.enumerated() {
            try Data(records(count, seed: seed + UInt64(i))).write(to: URL(fileURLWithPath: dir + "/" + name))
        }
        if test > 0 {
            try Data(records(test, seed: seed + 100)).write(to: URL(fileURLWithPath: dir + "/test_batch.bin"))
        }
        return dir
    }
}

/// Runs the executable under real `mpirun` (as root it needs Open MPI's two permission variables;
/// more ranks than cores need --oversubscribe). Every run is bounded by `timeout`, so a rank left
/// hanging fails the test instead of stalling the suite.
enum MPI {
    /// What Open MPI needs to start as root.
    static let asRoot = ["OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"]

    static func run(
        _ np: Int, _ arguments: [String], environment: [String: String] = [:], unset: [String] = [],
        program: String = CLI.executable, seconds: Int = 180
    ) throws -> CLI.Result {
        var env = environment.merging(asRoot) { _, root in root }
        env["OMPI_MCA_rmaps_base_oversubscribe"] = "1"
        return try CLI.run(
            ["timeout", "\(seconds)", "mpirun", "-np", "\(np)", "--oversubscribe", program] + arguments,
            executable: "/usr/bin/env", environment: env, unset: unset)
    }

    /// Multiple-program launch: one argument list per rank.
    static func runPerRank(_ perRank: [[String]], seconds: Int = 180) throws -> CLI.Result {
        var args = ["timeout", "\(seconds)", "mpirun", "--oversubscribe"]
        for (i, a) in perRank.enumerated() {
            if i > 0 { args.append(":") }
            args += ["-np", "1", CLI.executable] + a
        }
        return try CLI.run(args, executable: "/usr/bin/env", environment: asRoot)
    }
}
