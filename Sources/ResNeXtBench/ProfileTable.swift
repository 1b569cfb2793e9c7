import Foundation
import ResNeXt

extension Profile {
    /// The profile table: seconds per step for each kind of work, and its share of the step.
    public static func table(steps: Int, total: Double) -> String {
        var lines = ["| work | ms/step | share |", "|---|---:|---:|"]
        var accounted = 0.0
        for kind in WorkKind.allCases {
            let t = Profile.seconds[kind.rawValue]
            accounted += t
            if t == 0 { continue }
            lines.append(String(format: "| %@ | %.1f | %.1f %% |", kind.label, 1000 * t / Double(steps), 100 * t / total))
        }
        lines.append(
            String(format: "| unaccounted | %.1f | %.1f %% |", 1000 * (total - accounted) / Double(steps), 100 * (total - accounted) / total))
        return lines.joined(separator: "\n")
    }
}
