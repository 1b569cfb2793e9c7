import Foundation
import ResNeXt
import ResNeXtTrain
import Testing

/// launch/simulated-cluster.sh: two network namespaces as nodes on a bridge, Open MPI's daemons
/// started in them through an rsh agent, the ranks over TCP. The model equals `mpirun -np 2` on
/// one node byte for byte (a sum of two is exact in any order), nothing it created is left, and
/// a node's death ends the job naming the rank and the node.
@Suite(.serialized) struct SimulatedClusterTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static var script: String { root.appendingPathComponent("launch/simulated-cluster.sh").path }

    /// The namespaces and links of simulated clusters (their names start with "rs" and a pid).
    static func leftovers() throws -> [String] {
        let namespaces = (try? FileManager.default.contentsOfDirectory(atPath: "/run/netns")) ?? []
        let links = try CLI.run(["-o", "link", "show"], executable: "/usr/sbin/ip").stdout.split(separator: "\n")
            .compactMap { $0.split(separator: ":").dropFirst().first?.trimmingCharacters(in: .whitespaces) }
        return (namespaces + links).filter { $0.range(of: #"^rs[0-9]+(br|v[0-9]+|n[0-9]+)"#, options: .regularExpression) != nil }
    }

    @Test func twoNodesEqualOneNode() throws {
        let data = try SyntheticCIFAR.folder(train: [("data_batch_1.bin", 64)], test: 16)
        let one = try temporaryDirectory(), two = try temporaryDirectory()
        let common = MPITests.tiny + ["--epochs", "2", "--batch-size", "16", "--bn-group", "4", "--data-dir", data]
        let before = try Self.leftovers()
        #expect(try MPI.run(2, ["train"] + common + ["--outdir", one]).status == 0)
        let r = try CLI.run(
            ["--nodes", "2", "--rate", "1gbit", "--"] + common + ["--outdir", two], executable: Self.script,
            environment: ["RESNEXT_DDP": CLI.executable])
        #expect(r.status == 0, "\(r.output)")
        #expect(r.stdout.contains("simulated cluster: 2 node(s) x 1 rank(s), links of 1gbit each way"), "\(r.stdout)")
        #expect(r.stdout.contains("2 process(es) x 8 images = batch 16"), "\(r.stdout)")
        #expect(
            try Data(contentsOf: URL(fileURLWithPath: one + "/model.safetensors"))
                == Data(contentsOf: URL(fileURLWithPath: two + "/model.safetensors")))
        #expect(try Self.leftovers() == before, "the namespaces and links are removed")
    }

    /// SIGKILL to the rank on node 2 (its namespace's processes): the job ends, non-zero, with
    /// Open MPI's message naming the rank and the node; nothing is left behind.
    @Test func aNodesDeathEndsTheJob() throws {
        let data = try SyntheticCIFAR.folder(train: [("data_batch_1.bin", 64)], test: 16)
        let out = try temporaryDirectory()
        let before = try Self.leftovers()
        let args =
            ["--nodes", "2", "--"] + MPITests.tiny + [
                "--epochs", "3000", "--batch-size", "16", "--bn-group", "4", "--data-dir", data, "--outdir", out,
            ]
        let process = try CheckpointTests.background(
            Self.script, args, log: out + "/stdout.txt", errors: out + "/stderr.txt", environment: ["RESNEXT_DDP": CLI.executable])
        var killed = false
        if CheckpointTests.waitForEpochs(2, in: out) {
            for rank in CheckpointTests.ranks(of: CLI.executable, writing: out) where rank.rank == 1 {
                killed = kill(rank.pid, SIGKILL) == 0
            }
        }
        process.waitUntilExit()
        let errors = try String(contentsOfFile: out + "/stderr.txt", encoding: .utf8)
        #expect(
            killed && process.terminationStatus != 0 && process.terminationStatus != StopSignal.exitStatus,
            "exit \(process.terminationStatus): \(errors)")
        // Open MPI names the rank and the node it ran on
        #expect(errors.contains("rank 1") && errors.contains("on node 10.213.") && errors.contains("signal 9"), "\(errors)")
        #expect(try Self.leftovers() == before, "the namespaces and links are removed")
    }
}
