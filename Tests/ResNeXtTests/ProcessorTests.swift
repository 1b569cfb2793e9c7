import Foundation
import ResNeXt
import Testing

/// A C compiler for the tests that build small programs: the Swift toolchain's clang (SwiftPM
/// compiles the package's C targets with it, so it is wherever the package builds).
func clangPath() throws -> String {
    let which = try CLI.run(["which", "clang"], executable: "/usr/bin/env")
    let path = which.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    guard which.status == 0, !path.isEmpty else {
        throw ResNeXtError("clang is not on PATH: put the Swift toolchain's bin folder (e.g. /opt/swift/usr/bin) on PATH")
    }
    return path
}

/// The package's root folder (this file is Tests/ResNeXtTests/ProcessorTests.swift).
let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().path

/// `BLASKernelChoice`: OpenBLAS's family is replaced only where it lacks FMA on a processor with
/// FMA, and never against the user's OPENBLAS_CORETYPE.
@Suite struct BLASKernelChoiceTests {
    static let sse = Processor(vendor: "GenuineIntel", features: ["sse3", "ssse3", "sse4.2"])
    static let avx2Intel = Processor(vendor: "GenuineIntel", features: ["sse4.2", "avx", "avx2", "fma"])
    static let avx2AMD = Processor(vendor: "AuthenticAMD", features: ["sse4.2", "avx", "avx2", "fma"])
    static let avx512Intel = Processor(
        vendor: "GenuineIntel",
        features: avx2Intel.features.union(
            ["avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512cd"]))
    static let avx512AMD = Processor(vendor: "AuthenticAMD", features: avx512Intel.features)

    @Test func decides() {
        // the Intel Xeon model 207 case: Prescott picked on an AVX-512 processor
        #expect(
            BLASKernelChoice.decide(picked: "Prescott", coretype: nil, restartedFrom: nil, processor: Self.avx512Intel)
                == .restart(picked: "Prescott", with: "SkylakeX"))
        #expect(
            BLASKernelChoice.decide(picked: "Sandybridge", coretype: nil, restartedFrom: nil, processor: Self.avx2Intel)
                == .restart(picked: "Sandybridge", with: "Haswell"))
        #expect(
            BLASKernelChoice.decide(picked: "Prescott", coretype: nil, restartedFrom: nil, processor: Self.avx2AMD)
                == .restart(picked: "Prescott", with: "Zen"))
        #expect(
            BLASKernelChoice.decide(picked: "Core2", coretype: nil, restartedFrom: nil, processor: Self.avx512AMD)
                == .restart(picked: "Core2", with: "SkylakeX"), "AVX-512 on AMD (Zen 4) runs the SkylakeX kernels")
        // AVX-512F alone is not what the SkylakeX kernels need
        var partial = Self.avx2Intel
        partial.features.insert("avx512f")
        #expect(
            BLASKernelChoice.decide(picked: "Prescott", coretype: nil, restartedFrom: nil, processor: partial)
                == .restart(picked: "Prescott", with: "Haswell"))
        // OpenBLAS's own choice stands where it has FMA, or where the processor has none
        for family in ["Haswell", "Zen", "SkylakeX", "Cooperlake", "SapphireRapids"] {
            #expect(BLASKernelChoice.decide(picked: family, coretype: nil, restartedFrom: nil, processor: Self.avx512Intel) == .openBLAS(family))
        }
        #expect(BLASKernelChoice.decide(picked: "Prescott", coretype: nil, restartedFrom: nil, processor: Self.sse) == .openBLAS("Prescott"))
        // the user's setting stands, even a slow one; an empty one counts as unset
        #expect(
            BLASKernelChoice.decide(picked: "Prescott", coretype: "Prescott", restartedFrom: nil, processor: Self.avx512Intel)
                == .setByUser("Prescott"))
        #expect(
            BLASKernelChoice.decide(picked: "Prescott", coretype: "", restartedFrom: nil, processor: Self.avx512Intel)
                == .restart(picked: "Prescott", with: "SkylakeX"))
        // the restarted process knows why it runs what it runs
        #expect(
            BLASKernelChoice.decide(picked: "SkylakeX", coretype: "SkylakeX", restartedFrom: "Prescott", processor: Self.avx512Intel)
                == .restarted(picked: "Prescott", with: "SkylakeX"))
    }

    @Test func startupLines() {
        let p = Self.avx512Intel
        #expect(
            BLASKernelChoice.setByUser("Prescott").startupLine(running: "Prescott", processor: p)
                == "OpenBLAS: Prescott kernels (OPENBLAS_CORETYPE=Prescott)")
        #expect(
            BLASKernelChoice.openBLAS("Zen").startupLine(running: "Zen", processor: Self.avx2AMD)
                == "OpenBLAS: Zen kernels (its own choice for this processor: AVX2 and FMA)")
        let restarted = BLASKernelChoice.restarted(picked: "Prescott", with: "SkylakeX").startupLine(running: "SkylakeX", processor: p)
        #expect(
            restarted.hasPrefix(
                "OpenBLAS: SkylakeX kernels (OpenBLAS picked Prescott, without FMA, on this processor with AVX-512 and FMA: resnext-ddp restarted itself with OPENBLAS_CORETYPE=SkylakeX"
            ), "\(restarted)")
        let failed = BLASKernelChoice.restart(picked: "Prescott", with: "SkylakeX").startupLine(running: "Prescott", processor: p)
        #expect(failed.hasPrefix("warning: ") && failed.contains("-x OPENBLAS_CORETYPE=SkylakeX"), "\(failed)")
    }
}

/// The executable's start-up, on whatever processor the tests run: the kernels it ends up with,
/// and the restart that fixes OpenBLAS's choice.
@Suite(.serialized) struct BLASKernelStartupTests {
    static let small = [
        "bench", "--depth", "11", "--cardinality", "2", "--base-channels", "2", "--batch-size", "8",
        "--bn-group", "4", "--steps", "1",
    ]

    /// The line names the family that runs: OPENBLAS_CORETYPE's where set, else one with FMA
    /// wherever the processor has FMA (OpenBLAS's own choice, or the one the restart set).
    @Test func benchSaysWhichKernelsRun() throws {
        let forced = try CLI.run(Self.small, environment: ["OPENBLAS_CORETYPE": "Prescott"])
        #expect(forced.status == 0, "\(forced.output)")
        #expect(forced.stdout.contains("OpenBLAS: Prescott kernels (OPENBLAS_CORETYPE=Prescott)\n"), "\(forced.output)")

        let plain = try CLI.run(Self.small, unset: ["OPENBLAS_CORETYPE"])
        #expect(plain.status == 0, "\(plain.output)")
        let line = try #require(plain.stdout.split(separator: "\n").first { $0.hasPrefix("OpenBLAS: ") }, "\(plain.output)")
        let family = String(line.dropFirst("OpenBLAS: ".count).prefix { $0 != " " })
        if BLASKernelChoice.family(for: .current) != nil {
            #expect(BLASKernelChoice.fmaFamilies.contains(family), "\(line)")
        }
        #expect(!plain.output.contains("warning"), "\(plain.output)")
    }

    /// Where OpenBLAS picks kernels without FMA (here made to: a library loaded first answers
    /// "Prescott" for its choice until OPENBLAS_CORETYPE is set), every rank of `mpirun -np 2`
    /// restarts itself before MPI starts and runs the family this processor should get.
    @Test func restartsWithTheRightKernelsUnderMPI() throws {
        let dir = try temporaryDirectory()
        let source = dir + "/fake_corename.c", library = dir + "/fake_corename.so"
        try """
        #define _GNU_SOURCE
        #include <dlfcn.h>
        #include <stdlib.h>
        char *openblas_get_corename(void) {
            if (!getenv("OPENBLAS_CORETYPE")) return "Prescott";
            char *(*real)(void) = (char *(*)(void))dlsym(RTLD_NEXT, "openblas_get_corename");
            return real();
        }
        """.write(toFile: source, atomically: false, encoding: .utf8)
        let cc = try CLI.run(["-shared", "-fPIC", "-O2", source, "-o", library], executable: try clangPath())
        try #require(cc.status == 0, "\(cc.output)")

        let r = try MPI.run(
            2, Self.small + ["--batch-size", "16"], environment: ["LD_PRELOAD": library],
            unset: ["OPENBLAS_CORETYPE", "RESNEXT_OPENBLAS_PICKED"])
        #expect(r.status == 0, "\(r.output)")
        if let family = BLASKernelChoice.family(for: .current) {
            // the bench's first line names the kernels OpenBLAS runs, the start-up line why
            #expect(r.stdout.contains("(OpenBLAS \(family)),"), "\(r.output)")
            #expect(
                r.stdout.contains(
                    "OpenBLAS: \(family) kernels (OpenBLAS picked Prescott, without FMA, on this processor with \(Processor.current.vectorSummary): resnext-ddp restarted itself with OPENBLAS_CORETYPE=\(family)"
                ), "\(r.output)")
        } else {
            #expect(r.stdout.contains("OpenBLAS: Prescott kernels (its own choice"), "a processor without FMA keeps them: \(r.output)")
        }
    }
}

/// HostCPU's check before main: a program built for instruction sets this processor lacks stops
/// with one line naming the target and the fix, instead of dying of SIGILL; one built for this
/// processor runs. (The C file itself, compiled as scripts/setup compiles it, with a main.)
@Suite struct BuildTargetCheckTests {
    /// Instruction sets a -march implies, in HostCPU's names.
    static func features(march: String, clang: String) throws -> Set<String> {
        let r = try CLI.run(["-march=\(march)", "-dM", "-E", "-x", "c", "/dev/null"], executable: clang)
        guard r.status == 0 else { return [] }
        var out: Set<String> = []
        for line in r.stdout.split(separator: "\n") {
            let parts = line.split(separator: " ")
            guard parts.count >= 2, parts[0] == "#define", parts[1].hasPrefix("__"), parts[1].hasSuffix("__") else { continue }
            let name = parts[1].dropFirst(2).dropLast(2).lowercased().replacingOccurrences(of: "_", with: ".")
            if Processor.knownFeatures.contains(name) { out.insert(name) }
        }
        return out
    }

    static func build(march: String, clang: String) throws -> String {
        let dir = try temporaryDirectory()
        try "#include <stdio.h>\nint main(void) { puts(\"ran\"); return 0; }\n".write(toFile: dir + "/main.c", atomically: false, encoding: .utf8)
        let c = try CLI.run(
            [
                "-O2", "-march=\(march)", "-DRESNEXT_BUILD_CPU=\(march)", "-I", packageRoot + "/Sources/HostCPU/include",
                packageRoot + "/Sources/HostCPU/host_cpu.c", dir + "/main.c", "-o", dir + "/program",
            ], executable: clang)
        #expect(c.status == 0, "\(c.output)")
        return dir + "/program"
    }

    @Test func stopsWithOneLineInsteadOfSIGILL() throws {
        #if arch(x86_64)
            let clang = try clangPath()
            let here = Processor.current.features
            #expect(here.contains("sse3"), "HostCPU reads no features on this x86-64: \(here)")
            // for this processor: runs
            let native = try CLI.run([], executable: try Self.build(march: "native", clang: clang))
            #expect(native.status == 0 && native.stdout == "ran\n" && native.stderr.isEmpty, "\(native.output)")
            // for one it is not: the first of these targets with an instruction set this one lacks
            // (on Zen 4 and on Intel Xeon model 207 alike, znver5 has AVX-512 VP2INTERSECT)
            var tried: [String] = []
            for march in ["znver5", "graniterapids", "sapphirerapids", "znver4", "skylake-avx512", "haswell"] {
                let missing = try Self.features(march: march, clang: clang).subtracting(here)
                guard !missing.isEmpty else { tried.append(march); continue }
                let r = try CLI.run([], executable: try Self.build(march: march, clang: clang))
                #expect(r.status == 1 && r.stdout.isEmpty, "built for \(march): exit \(r.status) (SIGILL is 132 or -4): \(r.output)")
                let lines = r.stderr.split(separator: "\n")
                #expect(lines.count == 1, "\(r.stderr)")
                #expect(
                    r.stderr.hasPrefix("error: this binary was built for \(march) (RESNEXT_TARGET_CPU), but this processor lacks "), "\(r.stderr)")
                #expect(
                    missing.allSatisfy { r.stderr.contains($0) }
                        && r.stderr.contains("RESNEXT_TARGET_CPU=<the oldest node's CPU, e.g. haswell> scripts/setup"),
                    "lacks \(missing): \(r.stderr)")
                return
            }
            Issue.record("this processor has every instruction set of \(tried): no target to check the refusal with")
        #endif
    }
}
